#!/usr/bin/env python3
"""The benchmark corpus: AdmissionReviews of pods shaped like what an API server sends for
Deployment pods, small (~2.5 KB), typical (~7 KB: service-account volume, probes, two dozen env
vars, a sidecar) and large (20 containers, ~39 KB), each opted in and not; and the typical one
opted in with the metadata.managedFields a real CREATE review carries (~12 KB).

  bench-corpus.py --write DIR   writes DIR/<shape>-<injected|skipped>.json (the committed
                                webhook/benches/corpus/, read by `cargo bench` and bench-load.sh)
  bench-corpus.py URL DIR [ANNOTATION]
                                prints vegeta JSON targets for URL from the files in DIR, with
                                the opt-in annotation renamed to ANNOTATION if given (another
                                injector's, for a load run beside it)"""
import base64, json, sys

def container(name, env_vars):
    return {
        "name": name, "image": f"registry.example.com/team/{name}:1.2.3",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": f"SETTING_{i}", "value": f"value-{i}-" + "x" * 24} for i in range(env_vars)],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "volumeMounts": [{"name": "kube-api-access", "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
    }

def pod(containers, env_vars, opted_in, extra_labels=0):
    annotations = {"dragonfly.io/inject-p2p": "true"} if opted_in else {}
    labels = {"app": "web", "pod-template-hash": "7d4b9c8f6"}
    labels.update({f"example.com/label-{i}": f"value-{i}" for i in range(extra_labels)})
    return {
        "metadata": {"generateName": "web-7d4b9c8f6-", "labels": labels, "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6",
                                          "uid": "5c1e3f1e-2b1a-4c39-9d0e-1f0f4b8a7c11", "controller": True, "blockOwnerDeletion": True}]},
        "spec": {
            "containers": [container(f"c{i}", env_vars) for i in range(containers)],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        },
    }

def fields_v1(value):
    """What the API server records in managedFields for a value it stored: every key as `f:key`,
    list items with a name as `k:{"name":...}`, leaves as {}."""
    if isinstance(value, dict):
        return {f"f:{key}": fields_v1(item) for key, item in value.items()}
    if isinstance(value, list):
        return {("k:" + json.dumps({"name": item["name"]}, separators=(",", ":")) if isinstance(item, dict) and "name" in item
                 else f"i:{i}"): fields_v1(item) for i, item in enumerate(value)}
    return {}

def with_managed_fields(obj):
    """The pod as a real API server sends it to admission on CREATE: the field manager has run,
    so metadata.managedFields lists every field the ReplicaSet controller set."""
    obj = json.loads(json.dumps(obj))
    owned = {"metadata": {k: v for k, v in obj["metadata"].items() if k != "annotations"}, "spec": obj["spec"]}
    obj["metadata"]["managedFields"] = [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                                         "time": "2026-11-30T12:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields_v1(owned)}]
    return obj

def review(uid, obj):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "apps", "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts", "system:authenticated"]},
        "object": obj, "oldObject": None, "dryRun": False, "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}

import os

SHAPES = [("small", 1, 2, 0), ("typical", 2, 24, 20), ("large", 20, 15, 10)]
NAMES = [f"{name}-{kind}" for name, *_ in SHAPES for kind in ("injected", "skipped")] + ["typical-managed-injected"]

if sys.argv[1] == "--write":
    for name, containers, env_vars, labels in SHAPES:
        for opted_in in (True, False):
            body = json.dumps(review(f"{name}-{opted_in}", pod(containers, env_vars, opted_in, labels)), indent=1)
            path = os.path.join(sys.argv[2], f"{name}-{'injected' if opted_in else 'skipped'}.json")
            open(path, "w").write(body + "\n")
            print(f"{path}: {len(body)} bytes", file=sys.stderr)
    # The typical pod again, with the managedFields a real CREATE review carries.
    body = json.dumps(review("typical-managed", with_managed_fields(pod(2, 24, True, 20))), indent=1)
    path = os.path.join(sys.argv[2], "typical-managed-injected.json")
    open(path, "w").write(body + "\n")
    print(f"{path}: {len(body)} bytes", file=sys.stderr)
else:
    url, directory = sys.argv[1], sys.argv[2]
    annotation = sys.argv[3] if len(sys.argv) > 3 else None
    for name in NAMES:
        obj = json.load(open(os.path.join(directory, f"{name}.json")))
        annotations = obj["request"]["object"]["metadata"]["annotations"]
        if annotation and "dragonfly.io/inject-p2p" in annotations:
            annotations[annotation] = annotations.pop("dragonfly.io/inject-p2p")
        # Compact, as the API server sends it.
        body = json.dumps(obj, separators=(",", ":")).encode()
        print(json.dumps({"method": "POST", "url": url, "body": base64.b64encode(body).decode(),
                          "header": {"Content-Type": ["application/json"]}}))
