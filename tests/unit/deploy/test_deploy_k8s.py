"""The kustomize overlays render, validate against the Kubernetes schemas and keep the
security, probing and RBAC rules the runtime relies on."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_support import OVERLAYS, k8s_validate, kustomize

BACKENDS = ("ingest", "curation", "captioning", "trainer", "render")
CONTROLLERS = ("trainer", "render")


def _by_kind(docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_validates_against_the_kubernetes_schema(overlay):
    docs = kustomize(overlay)
    assert docs, f"kubectl kustomize k8s/overlays/{overlay} rendered nothing"
    for doc in docs:
        k8s_validate(doc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_deployment_service_and_pdb(overlay):
    docs = kustomize(overlay)
    deployments = _by_kind(docs, "Deployment")
    services = _by_kind(docs, "Service")
    pdbs = _by_kind(docs, "PodDisruptionBudget")
    for name in ("gateway", *BACKENDS):
        assert name in deployments, f"{overlay}: no Deployment {name}"
        assert name in services, f"{overlay}: no Service {name}"
        assert name in pdbs, f"{overlay}: no PodDisruptionBudget {name}"
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == selector
        assert services[name]["spec"]["selector"] == selector
    for name in BACKENDS:
        ports = {p["name"]: p["port"] for p in services[name]["spec"]["ports"]}
        assert ports == {"grpc": 50051, "metrics": 9464}
    assert {p["port"] for p in services["gateway"]["spec"]["ports"]} == {8080, 9464}
    assert all(d["metadata"]["namespace"] == "loraforge" for d in docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_on_every_deployment(overlay):
    for name, dep in _by_kind(kustomize(overlay), "Deployment").items():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert probe in c, f"{overlay}: {name}/{c['name']} has no {probe}"
                if name == "gateway":
                    assert c[probe]["httpGet"]["path"] == "/healthz"
                else:
                    assert c[probe]["grpc"]["port"] == 50051, (
                        f"{name}: {probe} is not gRPC on 50051"
                    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_non_root_hardened_and_bounded(overlay):
    for wl in _workloads(kustomize(overlay)):
        name = wl["metadata"]["name"]
        spec = wl["spec"]["template"]["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        mounts_by_container = {}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["readOnlyRootFilesystem"] is True, name
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), f"{name}: requests"
            assert "memory" in res["limits"], f"{name}: memory limit"
            mounts_by_container[c["name"]] = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if wl["kind"] == "Deployment":
            for cname, mounts in mounts_by_container.items():
                assert "/tmp" in mounts, f"{name}/{cname}: read-only root needs a /tmp emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_controllers_may_launch_jobs(overlay):
    docs = kustomize(overlay)
    roles = _by_kind(docs, "Role")
    bindings = _by_kind(docs, "RoleBinding")
    deployments = _by_kind(docs, "Deployment")
    sas = _by_kind(docs, "ServiceAccount")
    (role,) = roles.values()
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules[("batch", "jobs")] == {"create", "get", "list", "watch", "delete"}
    assert rules[("", "pods")] >= {"get", "list", "watch"}
    assert rules[("", "pods/log")] >= {"get"}
    (binding,) = bindings.values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    subjects = {(s["kind"], s["name"], s["namespace"]) for s in binding["subjects"]}
    assert subjects == {("ServiceAccount", f"loraforge-{c}", "loraforge") for c in CONTROLLERS}
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        if name in CONTROLLERS:
            assert pod["serviceAccountName"] == f"loraforge-{name}"
        else:
            assert pod["serviceAccountName"] == "loraforge"
            assert pod["automountServiceAccountToken"] is False
    assert sas["loraforge-job"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_default_deny_and_allow_the_paths_in_use(overlay):
    docs = kustomize(overlay)
    pols = _by_kind(docs, "NetworkPolicy")
    deny = pols["default-deny-all"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny

    gw = pols["gateway-ingress"]["spec"]
    assert gw["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]  # from anywhere

    be = pols["backend-ingress"]["spec"]
    (rule,) = be["ingress"]
    peers = [p["podSelector"]["matchLabels"] for p in rule["from"]]
    assert peers == [{"loraforge.io/tier": "gateway"}, {"loraforge.io/tier": "backend"}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 50051}]

    dns_ports = {
        (p["protocol"], p["port"]) for p in pols["allow-dns-egress"]["spec"]["egress"][0]["ports"]
    }
    assert dns_ports == {("UDP", 53), ("TCP", 53)}
    egress_ports = {
        p["port"] for r in pols["loraforge-egress"]["spec"]["egress"] for p in r["ports"]
    }
    assert {4222, 9000, 50051} <= egress_ports

    # Labels the policies select on are really on the pods.
    for name, dep in _by_kind(docs, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "loraforge"
        assert labels["loraforge.io/tier"] == ("gateway" if name == "gateway" else "backend")
        if name in CONTROLLERS:
            assert labels.get("loraforge.io/kube-api-client") == "true"


def test_dev_runs_nats_and_minio_as_statefulsets_with_pvcs():
    docs = kustomize("dev")
    sts = _by_kind(docs, "StatefulSet")
    assert set(sts) == {"nats", "minio"}
    for s in sts.values():
        assert s["spec"]["volumeClaimTemplates"], s["metadata"]["name"]
    nats_args = sts["nats"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert nats_args[:3] == ["-js", "-sd", "/data"]
    assert _by_kind(docs, "Secret")["loraforge-secrets"]
    assert _by_kind(docs, "ConfigMap")["loraforge-config"]["data"]["LORAFORGE_ENV"] == "development"


def test_prod_uses_external_endpoints_an_external_secret_and_more_replicas():
    docs = kustomize("prod")
    assert not _by_kind(docs, "Secret"), "prod must not ship a Secret; it is managed outside"
    assert not _by_kind(docs, "StatefulSet")
    data = _by_kind(docs, "ConfigMap")["loraforge-config"]["data"]
    assert data["LORAFORGE_ENV"] == "production"
    assert data["LORAFORGE_NATS__URL"] != "nats://nats:4222"
    assert data["LORAFORGE_S3__ENDPOINT"] != "minio:9000"
    assert data["LORAFORGE_S3__SECURE"] == "true"
    deployments = _by_kind(docs, "Deployment")
    assert all(d["spec"]["replicas"] >= 2 for d in deployments.values())
    images = {
        c["image"]
        for d in deployments.values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert data["LORAFORGE_K8S__TRAINER_IMAGE"] in images
    assert data["LORAFORGE_K8S__RENDER_IMAGE"] in images


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_carries_every_setting_the_services_read(overlay):
    data = _by_kind(kustomize(overlay), "ConfigMap")["loraforge-config"]["data"]
    required = {
        "LORAFORGE_ENV",
        "LORAFORGE_NATS__URL",
        "LORAFORGE_S3__ENDPOINT",
        "LORAFORGE_S3__SECURE",
        "LORAFORGE_S3__REGION",
        "LORAFORGE_SERVER__HOST",
        "LORAFORGE_SERVER__GRPC_PORT",
        "LORAFORGE_SERVER__METRICS_PORT",
        "LORAFORGE_SERVER__HTTP_PORT",
        "LORAFORGE_ENDPOINTS__INGEST",
        "LORAFORGE_ENDPOINTS__CURATION",
        "LORAFORGE_ENDPOINTS__CAPTIONING",
        "LORAFORGE_ENDPOINTS__TRAINER",
        "LORAFORGE_ENDPOINTS__RENDER",
        "LORAFORGE_LOG__FORMAT",
        "LORAFORGE_LOG__LEVEL",
        "LORAFORGE_MODELS__DIR",
        "LORAFORGE_K8S__NAMESPACE",
        "LORAFORGE_K8S__TRAINER_IMAGE",
        "LORAFORGE_K8S__RENDER_IMAGE",
    }
    assert required <= set(data)
    assert not any("SECRET" in k or "ACCESS_KEY" in k for k in data), (
        "credentials belong in the Secret"
    )
