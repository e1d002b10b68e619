"""A stateful stand-in for the `gcloud` commands deploy.sh runs, for testing its real mode.

    FAKE_GCLOUD_STATE=state.json python tests/fakes/gcloud.py <gcloud arguments>

It keeps the resources, IAM bindings, labels, subscription policies and secret values that the
commands create in a JSON file, answers `describe`/`list`/`get-iam-policy`/`--format=value(...)`
lookups from it the way gcloud would (exit 1 for a missing resource), and appends every call to
`calls` in the state (secret values only ever arrive on stdin). It knows only the commands and
fields deploy.sh uses; anything else exits 2 so a test notices.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    path = Path(os.environ["FAKE_GCLOUD_STATE"])
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {
        "resources": {}, "bindings": [], "calls": [], "secrets": {}}
    try:
        return Fake(state, argv).run()
    finally:
        path.write_text(json.dumps(state, indent=1))


class Fake:
    def __init__(self, state: dict[str, Any], argv: list[str]) -> None:
        self.state, self.argv = state, argv
        self.flags: dict[str, str] = {}
        self.words: list[str] = []
        for arg in argv:
            if arg.startswith("--"):
                name, _, value = arg[2:].partition("=")
                self.flags[name] = value
            else:
                self.words.append(arg)
        state["calls"].append(argv)

    def out(self, text: str) -> int:
        print(text)
        return 0

    # resources are keyed "group/name"
    def key(self, group: str, name: str) -> str:
        return f"{group}/{name}"

    def res(self, group: str, name: str) -> dict[str, Any] | None:
        return self.state["resources"].get(self.key(group, name))

    def run(self) -> int:  # noqa: C901 - one dispatch table, read top to bottom
        w, f = self.words, self.flags
        joined = " ".join(w)
        fmt = f.get("format", "")
        if joined.startswith("services enable") or joined.startswith("beta services identity"):
            return 0
        if joined.startswith("projects describe"):
            return self.out("123456789")
        if joined == "beta" and "help" in f:
            return 0
        if "get-iam-policy" in w:
            # bindings are [resource, role, member] or, with an IAM condition, [..., title]
            resource = w[w.index("get-iam-policy") + 1]
            role, member, *title = re.findall(r'"([^"]*)"', f["filter"])
            matching = [b for b in self.state["bindings"] if b[:3] == [resource, role, member]
                        and (not title or b[3:] == title)]
            return self.out(role) if matching else 0
        if "add-iam-policy-binding" in w or "remove-iam-policy-binding" in w:
            verb = "add" if "add-iam-policy-binding" in w else "remove"
            resource = w[w.index(f"{verb}-iam-policy-binding") + 1]
            binding = [resource, f["role"], f["member"]]
            condition = f.get("condition")
            if w[0] == "projects" and condition is None:
                print("ERROR: a project policy binding needs --condition", file=sys.stderr)
                return 2
            if condition and condition != "None":
                parts = dict(part.split("=", 1) for part in re.split(r",(?=title=|expression=)",
                                                                     condition))
                binding.append(parts["title"])
                self.state.setdefault("conditions", {})[parts["title"]] = parts["expression"]
            if verb == "add" and binding not in self.state["bindings"]:
                self.state["bindings"].append(binding)
            if verb == "remove":
                if binding not in self.state["bindings"]:
                    print(f"ERROR: no binding {binding}", file=sys.stderr)
                    return 1
                self.state["bindings"].remove(binding)
            return 0
        if joined.startswith("iam service-accounts create"):
            return self.create("service-account", f"{w[3]}@{f['project']}.iam.gserviceaccount.com")
        if joined.startswith("iam service-accounts describe"):
            return self.describe("service-account", w[3])
        if joined.startswith("iam service-accounts delete"):
            users = [k for k, v in self.state["resources"].items()
                     if k.startswith("functions/") and v.get("serviceAccount") == w[3]]
            if users:  # the function would lose its identity: it stops working
                print(f"ERROR: {w[3]} is still the identity of {users}", file=sys.stderr)
                return 1
            return self.delete("service-account", w[3])
        if joined.startswith(("pubsub topics", "pubsub subscriptions", "firestore databases",
                              "api-gateway apis", "api-gateway api-configs",
                              "api-gateway gateways")):
            group, verb = " ".join(w[:2]), w[2]
            name = w[3] if len(w) > 3 else f.get("database", "")
            if verb == "create":
                extra = {"apiConfig": f.get("api-config")} if group.endswith("gateways") else {}
                return self.create(group, name, **extra)
            if verb == "update":
                return self.update(group, name)
            if verb == "describe":
                return self.describe(group, name)
            if verb == "delete":
                if group == "api-gateway api-configs" and any(
                        v.get("apiConfig") == name for k, v in self.state["resources"].items()
                        if k.startswith("api-gateway gateways/")):
                    print(f"ERROR: config {name} is in use by a gateway", file=sys.stderr)
                    return 1
                if group == "api-gateway apis" and self.names("api-gateway api-configs"):
                    print(f"ERROR: api {name} still has configs", file=sys.stderr)
                    return 1
                return self.delete(group, name)
            if verb == "list" and group == "api-gateway api-configs":
                return self.out("\n".join(self.names(group)))
        if joined.startswith("secrets delete"):
            return self.delete("secrets", w[2])
        if joined.startswith("functions delete"):
            code = self.delete("functions", w[2])
            for key in [k for k in self.state["resources"] if k.startswith(
                    "pubsub subscriptions/") and k.endswith(f"-{w[2]}-t-sub")]:
                del self.state["resources"][key]  # the trigger and its subscription go with it
            return code
        if joined.startswith("secrets versions"):
            secret = self.res("secrets", f["secret"] if "secret" in f else w[3])
            if secret is None:
                return 1
            if w[2] == "add":
                secret["values"].append(sys.stdin.read())
                return 0
            if w[2] == "access":
                sys.stdout.write(secret["values"][-1])
                return 0
            if w[2] == "describe":
                return self.out(str(len(secret["values"])))
        if joined.startswith("secrets create"):
            code = self.create("secrets", w[2], values=[sys.stdin.read()])
            return code
        if joined.startswith("secrets describe"):
            return self.describe("secrets", w[2])
        if joined.startswith("functions deploy"):
            name = w[2]
            labels = dict([f["update-labels"].split("=", 1)]) if "update-labels" in f else {}
            if "set-secrets" in f and "clear-secrets" in f:
                print("ERROR: --set-secrets and --clear-secrets", file=sys.stderr)
                return 2
            account = f["service-account"]
            if self.res("service-account", account) is None:
                print(f"ERROR: service account {account} does not exist", file=sys.stderr)
                return 1
            self.state["resources"][self.key("functions", name)] = {
                "labels": labels, "http": "trigger-http" in f, "serviceAccount": account,
                "secrets": f.get("set-secrets", ""), "ingress": f.get("ingress-settings", "all"),
                "deploys": (self.res("functions", name) or {}).get("deploys", 0) + 1}
            return 0
        if joined.startswith("functions describe"):
            fn = self.res("functions", w[2])
            if fn is None:
                return 1
            if "labels.deploy_hash" in fmt:
                return self.out(fn["labels"].get("deploy_hash", ""))
            if "eventTrigger.trigger" in fmt:
                location = f"projects/{f['project']}/locations/{f['region']}"
                return self.out(f"{location}/triggers/{w[2]}-t")
            if "serviceConfig.uri" in fmt:
                return self.out(f"https://{w[2]}-abc123-ew.a.run.app")
            if not fmt:
                return 0
        if joined.startswith("eventarc triggers describe"):
            name = w[3].rsplit("/", 1)[-1]
            sub = f"projects/{f['project']}/subscriptions/eventarc-{f['location']}-{name}-sub"
            self.state["resources"].setdefault(self.key("pubsub subscriptions", sub), {})
            return self.out(sub)
        if joined.startswith("services api-keys list"):
            keys = [k for k in self.state["resources"] if k.startswith("api-key/")]
            return self.out("\n".join(keys)) if keys else 0
        if joined.startswith("services api-keys create"):
            return self.create("api-key", f["display-name"])
        if joined.startswith("services api-keys delete"):
            return self.delete("api-key", w[3].removeprefix("api-key/"))
        print(f"fake gcloud: unsupported: {self.argv}", file=sys.stderr)
        return 2

    def create(self, group: str, name: str, **fields: Any) -> int:
        if self.res(group, name) is not None:
            print(f"ERROR: {group} {name} already exists", file=sys.stderr)
            return 1
        self.state["resources"][self.key(group, name)] = fields
        return 0

    def names(self, group: str) -> list[str]:
        return [k.split("/", 1)[1] for k in self.state["resources"] if k.startswith(f"{group}/")]

    def delete(self, group: str, name: str) -> int:
        if self.state["resources"].pop(self.key(group, name), None) is None:
            print(f"ERROR: {group} {name} not found", file=sys.stderr)
            return 1
        # a deleted resource's own IAM policy goes with it
        self.state["bindings"] = [b for b in self.state["bindings"] if b[0] != name]
        return 0

    def update(self, group: str, name: str) -> int:
        resource = self.res(group, name)
        if resource is None:
            return 1
        if group == "pubsub subscriptions":
            f = self.flags
            topic = f"projects/{f['project']}/topics/{f['dead-letter-topic']}"
            resource["policy"] = ",".join([topic, f["max-delivery-attempts"], f["min-retry-delay"],
                                           f["max-retry-delay"], f["ack-deadline"]])
        if group == "api-gateway gateways":
            resource["apiConfig"] = self.flags["api-config"]
        return 0

    def describe(self, group: str, name: str) -> int:
        resource = self.res(group, name)
        if resource is None:
            return 1
        fmt = self.flags.get("format", "")
        if group == "pubsub subscriptions" and "deadLetterPolicy" in fmt:
            return self.out(resource.get("policy", ""))
        if group == "api-gateway gateways" and "apiConfig" in fmt:
            return self.out(resource.get("apiConfig") or "")
        if group == "api-gateway gateways" and "defaultHostname" in fmt:
            return self.out(f"{name}-gw.ew.gateway.dev")
        if group == "api-gateway apis" and "managedService" in fmt:
            return self.out(f"{name}-xyz.apigateway.{self.flags['project']}.cloud.goog")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
