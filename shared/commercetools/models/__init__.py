"""Pydantic models of the commercetools resources the mappers read (the typed boundary).

One module per resource family; import from the submodule (e.g. `models.customer`). Only the
fields we map are declared; anything else commercetools sends is ignored, so a new CT field never
breaks parsing. Python names are snake_case, the wire is camelCase.
"""
