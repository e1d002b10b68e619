"""Library shared by the realtime and bulk functions: clients, mapping, configuration, errors."""
