"""Tests of the confcom Helm chart, its plain manifests and the samples.

Everything runs offline: the chart is rendered by the real Helm engine embedded in
helm-python-sdk, and objects are validated against the Kubernetes OpenAPI schemas shipped
inside kubernetes-validate.
"""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

import chartlib
from chartlib import pod_spec, render_objects

# Kinds that come from CRDs (cert-manager, prometheus-operator): no upstream schema.
CRD_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}

COMPONENTS = ["devicePlugin", "quoteHelper", "webhook", "attestation", "pccs"]
COMPONENT_LABEL = {
    "devicePlugin": "device-plugin",
    "quoteHelper": "quote-helper",
    "webhook": "webhook",
    "attestation": "attestation",
    "pccs": "pccs",
}

SIGNER_PEM = (chartlib.REPO / "testdata" / "dcap" / "Intel_SGX_Root_CA.pem").read_text()
SIGNER_PEM_OLD = (chartlib.REPO / "testdata" / "dcap" / "Intel_SGX_Root_CA_old-2033-variant.pem").read_text()
# An MAA claim-rule policy, given to the chart as a string.
MAA_POLICY = """version=1.0;
authorizationrules {
    [type=="x-ms-sgx-is-debuggable", value==false] => permit();
};
issuancerules {
    c:[type=="x-ms-sgx-mrsigner"] => issue(type="signer", value=c.value);
};
"""

# Value sets every test that loops over renders uses.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "simulation": {"simulation": {"enabled": True}},
    "simulation-shared-state": {"simulation": {"enabled": True, "stateSecret": "confcom-sim-state"}},
    **{f"no-{c}": {c: {"enabled": False}} for c in COMPONENTS},
    "all-off": {c: {"enabled": False} for c in COMPONENTS},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "cert-manager-issuer": {
        "webhook": {"certManager": {"enabled": True, "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}}
    },
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "azure-all-nodes": {"devicePlugin": {"profile": "azure", "nodeSelection": {"allNodes": True}}},
    "no-registrar": {"devicePlugin": {"registrar": {"enabled": False}}},
    "plugin-watcher": {"devicePlugin": {"registration": "plugin-watcher"}},
    "sim-backend-on-host": {"quoteHelper": {"backend": "sim"}},
    "policy-and-existing-key": {
        "attestation": {
            "policy": {"allow_debug": False, "mrsigner": ["00" * 32]},
            "signingKey": {"existingSecret": "my-key"},
            "adminTokenSecret": "attest-admin",
        }
    },
    "no-pvc-no-pdb": {
        "pccs": {"persistence": {"enabled": False}},
        "webhook": {"podDisruptionBudget": {"enabled": False}},
    },
    "in-kube-system": {"_namespace": "kube-system"},
    # PCCS over HTTPS with the certificate Helm generates, and policy signer certificates
    # (a real certificate, so the binary loads it in the start-up test).
    "pccs-tls-policy-signers": {
        "pccs": {"tls": {"enabled": True}},
        "attestation": {"policySignerCerts": [SIGNER_PEM, SIGNER_PEM_OLD]},
    },
    # MAA claim-rule text as the policy (a string value).
    "maa-policy": {"attestation": {"policy": MAA_POLICY}},
    "pccs-tls-cert-manager": {"pccs": {"tls": {"enabled": True, "certManager": {"enabled": True}}}},
    "pccs-tls-public-cert": {"pccs": {"tls": {"enabled": True, "existingSecret": "pccs-cert", "privateCA": False}}},
    "no-scrape-annotations": {"metrics": {"annotations": False}},
}


def render(name: str) -> list[dict[str, Any]]:
    values = copy.deepcopy(SCENARIOS[name])
    ns = values.pop("_namespace", chartlib.NAMESPACE)
    return render_objects(values or None, namespace=ns)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [
        o
        for o in by_kind(objs, kind)
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} of {component}, got {len(found)}"
    return found[0]


def named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in by_kind(objs, kind) if o["metadata"]["name"] == name]
    return found


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def validate(obj: dict[str, Any]) -> None:
    if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
        assert obj["metadata"]["name"] and obj["spec"], obj
        return
    # Strict schemas: unknown fields are errors too. SchemaNotFoundError is not caught: a
    # kind the Kubernetes 1.30 API does not know is a failure.
    kubernetes_validate.validate(obj, chartlib.KUBE_VERSION, strict=True)


# --- rendering and schemas -----------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_renders_and_validates_against_kubernetes_1_30(scenario: str) -> None:
    objs = render(scenario)
    if scenario == "all-off":
        assert objs == []
        return
    assert objs
    seen = set()
    for obj in objs:
        validate(obj)
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        assert key not in seen, f"duplicate object {key}"
        seen.add(key)
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == chartlib.RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_validator_catches_what_it_should() -> None:
    # Guards against a validation that passes everything: an unknown field and a wrong
    # type in a real rendered object must both fail.
    ds = one(render("default"), "DaemonSet", "device-plugin")
    bad = copy.deepcopy(ds)
    pod_spec(bad)["containers"][0]["securityContext"]["privilegedd"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    bad = copy.deepcopy(ds)
    pod_spec(bad)["containers"][0]["ports"][0]["containerPort"] = "metrics"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):
        validate({"apiVersion": "example.invalid/v1", "kind": "Gadget", "metadata": {"name": "x"}})


def test_kube_version_schemas_ship_with_the_package() -> None:
    # No network at test time: kubernetes-validate must carry the 1.30 schemas itself.
    assert "1.30.0" in kubernetes_validate.utils.all_versions()


@pytest.mark.parametrize("component", COMPONENTS)
def test_switching_a_component_off_removes_its_objects(component: str) -> None:
    on = render("default")
    off = render(f"no-{component}")
    label = COMPONENT_LABEL[component]
    assert any(o["metadata"]["labels"].get("app.kubernetes.io/component") == label for o in on)
    assert not any(o["metadata"]["labels"].get("app.kubernetes.io/component") == label for o in off)
    # ...and nothing else.
    others = [o for o in on if o["metadata"]["labels"].get("app.kubernetes.io/component") != label]
    assert len(others) == len(off)


@pytest.mark.parametrize(
    "scenario", ["default", "simulation", "pccs-tls-policy-signers", "policy-and-existing-key", "maa-policy"]
)
def test_helm_lint_strict_passes(scenario: str) -> None:
    report = helm.lint(
        chartlib.CHART,
        SCENARIOS[scenario] or None,
        strict=True,
        namespace=chartlib.NAMESPACE,
        kube_version=f"v{chartlib.KUBE_VERSION}",
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize(
    "bad",
    [
        {"webhook": {"failurePolicy": "Sometimes"}},
        {"unknownKey": True},
        {"devicePlugin": {"profile": "aliyun"}},
        {"devicePlugin": {"registration": "watcher"}},
        {"devicePlugin": {"pluginsRegistry": "var/lib/kubelet/plugins_registry"}},
        {"quoteHelper": {"backend": "epid"}},
        {"webhook": {"resources": {"limits": {"memory": None}}}},
        {"pccs": {"mode": "req"}},
        {"devicePlugin": {"extraArgs": ["no-dashes"]}},
        {"attestation": {"policySignerCerts": ["not a certificate"]}},
        {"attestation": {"runtimeState": {"pollSeconds": 0}}},
        {"attestation": {"runtimeState": {"enabled": "yes"}}},
        {"attestation": {"runtimeState": {"maxStalenessSeconds": -1}}},
        {"attestation": {"signingKey": {"pollSeconds": -1}}},
        {"attestation": {"signingKey": {"rotate": True}}},
        {"pccs": {"tls": {"enabled": True, "secretName": "typo"}}},
        {"pccs": {"tls": {"certManager": {"issuerRef": {"kind": "Vault"}}}}},
    ],
)
def test_schema_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chartlib.render_templates(bad)


# --- plain manifests -----------------------------------------------------------------


def test_checked_in_manifests_equal_the_default_render() -> None:
    expected = chartlib.plain_manifests()
    actual = chartlib.MANIFESTS.read_text()
    assert actual == expected, "deploy/manifests/confcom.yaml is stale: run deploy/render.sh"


def test_plain_manifests_carry_no_generated_key_material() -> None:
    text = chartlib.MANIFESTS.read_text()
    assert "PRIVATE KEY" not in text and "LS0tLS1CRUdJTi" not in text
    objs = [o for o in yaml.safe_load_all(text) if o]
    kinds = {o["kind"] for o in objs}
    assert "Secret" not in kinds
    for obj in objs:
        validate(obj)
    (mwc,) = by_kind(objs, "MutatingWebhookConfiguration")
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == ""
    # What install.sh creates is exactly what the manifests leave out.
    default_secrets = {o["metadata"]["name"] for o in by_kind(render("default"), "Secret")}
    script = (chartlib.DEPLOY / "manifests" / "install.sh").read_text()
    assert default_secrets == {"confcom-webhook-tls", "confcom-attestation-signing-key"}
    for name in ("confcom-attestation-signing-key", "$webhook-tls"):
        assert name in script


# --- pod security --------------------------------------------------------------------

# Containers that may run as uid 0 (they write into root-owned host directories); every
# other container runs as non-root.
ROOT_CONTAINERS = {"device-plugin", "quote-helper", "sim-export"}


@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - {"all-off"}))
def test_pods_are_hardened(scenario: str) -> None:
    pods = [(o, pod_spec(o)) for o in render(scenario) if pod_spec(o) is not None]
    assert pods
    for obj, spec in pods:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, where
        assert spec.get("hostIPC") is not True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in containers(spec):
            sc = c["securityContext"]
            cw = f"{where}:{c['name']}"
            assert sc.get("privileged") is not True, cw
            assert sc["allowPrivilegeEscalation"] is False, cw
            assert sc["readOnlyRootFilesystem"] is True, cw
            assert sc["capabilities"]["drop"] == ["ALL"], cw
            assert "add" not in sc["capabilities"], cw
            if c["name"] in ROOT_CONTAINERS and not (scenario == "simulation-shared-state" and c["name"] == "sim-export"):
                assert sc["runAsUser"] == 0, cw
            else:
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, cw
            limits = c["resources"]["limits"]
            requests = c["resources"]["requests"]
            assert limits["cpu"] and limits["memory"], cw
            assert requests["cpu"] and requests["memory"], cw
        for c in spec["containers"]:
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where


RESTRICTED_VOLUME_TYPES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI"}


@pytest.mark.parametrize("scenario", ["default", "simulation-shared-state", "cert-manager"])
def test_deployments_meet_pod_security_restricted(scenario: str) -> None:
    # The checks of the PodSecurity "restricted" profile that the fields above don't cover:
    # volume types, host ports, non-root at pod level. (Simulation with per-node state is
    # the one documented exception: its attestation pod reads a host directory.)
    deployments = by_kind(render(scenario), "Deployment")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "webhook", "attestation", "pccs"}
    for dep in deployments:
        spec = pod_spec(dep)
        where = dep["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        for vol in spec["volumes"]:
            kinds = set(vol) - {"name"}
            assert kinds <= RESTRICTED_VOLUME_TYPES, (where, vol)
        for c in containers(spec):
            assert all("hostPort" not in p for p in c.get("ports", [])), where
            assert c["securityContext"]["runAsNonRoot"] is True, (where, c["name"])


def test_only_the_node_agents_use_host_paths() -> None:
    for scenario in ("default", "simulation", "simulation-shared-state"):
        for obj in render(scenario):
            spec = pod_spec(obj)
            if spec is None:
                continue
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            host_paths = [v for v in spec.get("volumes", []) if "hostPath" in v]
            if component in ("device-plugin", "quote-helper"):
                assert host_paths, component
                if scenario == "simulation-shared-state":
                    assert "/var/lib/confcom/sim" not in [v["hostPath"]["path"] for v in host_paths]
            elif component == "attestation" and scenario == "simulation":
                assert [v["hostPath"]["path"] for v in host_paths] == ["/var/lib/confcom/sim"]
            else:
                assert host_paths == [], (scenario, component)


def test_root_containers_say_why_in_the_chart() -> None:
    templates = chartlib.CHART / "templates"
    for name in ("device-plugin-daemonset.yaml", "quote-helper.yaml", "attestation.yaml"):
        assert "Runs as uid 0" in (templates / name).read_text(), name


def test_scrape_annotations_on_every_pod_with_metrics() -> None:
    for obj in render("default"):
        if pod_spec(obj) is None:
            continue
        ann = obj["spec"]["template"]["metadata"]["annotations"]
        port = ann["prometheus.io/port"]
        ports = {str(p["containerPort"]) for c in pod_spec(obj)["containers"] for p in c["ports"]}
        assert ann["prometheus.io/scrape"] == "true" and port in ports, obj["metadata"]["name"]
    monitors = [o for o in render("monitoring") if o["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert sorted((m["kind"], m["metadata"]["name"]) for m in monitors) == [
        ("PodMonitor", "confcom-device-plugin"),
        ("PodMonitor", "confcom-quote-helper"),
        ("ServiceMonitor", "confcom-attestation"),
        ("ServiceMonitor", "confcom-pccs"),
        ("ServiceMonitor", "confcom-webhook"),
    ]
    assert all(m["metadata"]["labels"]["release"] == "prom" for m in monitors)
    for obj in render("no-scrape-annotations"):
        if pod_spec(obj) is not None:
            assert "prometheus.io/scrape" not in obj["spec"]["template"]["metadata"]["annotations"]


# --- device plugin -------------------------------------------------------------------


def _args(ds: dict[str, Any], container: str | None = None) -> list[str]:
    spec = pod_spec(ds)
    c = spec["containers"][0] if container is None else next(
        c for c in containers(spec) if c["name"] == container
    )
    return c["args"]


def test_device_plugin_daemonset() -> None:
    objs = render("default")
    ds = one(objs, "DaemonSet", "device-plugin")
    spec = pod_spec(ds)
    args = _args(ds)
    # The plugin's own binary, not `confcom device-plugin`: no subcommand word in the args.
    assert spec["containers"][0]["command"] == ["/usr/local/bin/confcom-device-plugin"]
    assert args[0].startswith("--") and "device-plugin" not in args
    assert "--platform=host" in args and "--register-node" in args
    assert "--kubelet-dir=/var/lib/kubelet/device-plugins" in args
    assert "--probe-addr=0.0.0.0:9100" in args and "--dev-root=/host/dev" in args
    hp = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    assert hp["device-plugins"]["path"] == "/var/lib/kubelet/device-plugins"
    assert hp["dev"]["path"] == "/dev"
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["dev"]["readOnly"] is True
    # Every node pool, including spot and tainted pools.
    assert spec["tolerations"] == [{"operator": "Exists"}]
    # Bootstrap: not only the registrar's own label selects nodes.
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    keys = {e["key"] for t in terms for e in t["matchExpressions"]}
    assert {
        "sgx.intel.com/capable",
        "feature.node.kubernetes.io/cpu-security.sgx.enabled",
        "intel.feature.node.kubernetes.io/sgx",
        "node.kubernetes.io/instance-type",
    } <= keys
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["CONFCOM_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["CONFCOM_LOG_FORMAT"]["value"] == "json"


def test_node_registrar_rbac_is_least_privilege() -> None:
    objs = render("default")
    (role,) = by_kind(objs, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("",), ("nodes",)): {"get", "watch", "patch"},
        (("",), ("nodes/status",)): {"patch"},
    }
    (binding,) = by_kind(objs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "confcom-device-plugin", "namespace": chartlib.NAMESPACE}
    ]
    # The only namespaced RBAC: the attestation service's runtime state ConfigMap
    # (test_attestation_runtime_state_configmap).
    assert [r["metadata"]["name"] for r in by_kind(objs, "Role")] == ["confcom-attestation-state"]
    assert [r["metadata"]["name"] for r in by_kind(objs, "RoleBinding")] == ["confcom-attestation-state"]
    # Only the device plugin gets an API token mounted everywhere (the attestation service
    # projects one into one container: test_attestation_runtime_state_configmap).
    for sa in by_kind(objs, "ServiceAccount"):
        expected = sa["metadata"]["name"] == "confcom-device-plugin"
        assert sa["automountServiceAccountToken"] is expected, sa["metadata"]["name"]
    no_reg = render("no-registrar")
    assert not by_kind(no_reg, "ClusterRole")
    assert "--register-node" not in _args(one(no_reg, "DaemonSet", "device-plugin"))


def test_device_plugin_registration_modes() -> None:
    # Default: classic registration on kubelet.sock, only the device-plugins dir mounted.
    ds = one(render("default"), "DaemonSet", "device-plugin")
    spec = pod_spec(ds)
    args = _args(ds)
    assert "--registration=kubelet" in args
    assert "--kubelet-dir=/var/lib/kubelet/device-plugins" in args
    assert not [a for a in args if a.startswith("--plugins-registry")]
    hp = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    assert set(hp) == {"device-plugins", "dev"}
    assert hp["device-plugins"] == {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"}
    # Plugin watcher: the plugins_registry dir instead, mounted at the host's path (the
    # kubelet dials the socket path the plugin reports), created if missing.
    ds = one(render("plugin-watcher"), "DaemonSet", "device-plugin")
    spec = pod_spec(ds)
    args = _args(ds)
    assert "--registration=plugin-watcher" in args
    assert "--plugins-registry=/var/lib/kubelet/plugins_registry" in args
    assert not [a for a in args if a.startswith("--kubelet-dir")]
    hp = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    assert set(hp) == {"plugins-registry", "dev"}
    assert hp["plugins-registry"] == {"path": "/var/lib/kubelet/plugins_registry", "type": "DirectoryOrCreate"}
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["plugins-registry"]["mountPath"] == "/var/lib/kubelet/plugins_registry"
    assert "readOnly" not in mounts["plugins-registry"]
    # A kubelet with another root dir.
    objs = chartlib.render_objects(
        {"devicePlugin": {"registration": "plugin-watcher", "pluginsRegistry": "/var/lib/k0s/kubelet/plugins_registry"}}
    )
    ds = one(objs, "DaemonSet", "device-plugin")
    assert "--plugins-registry=/var/lib/k0s/kubelet/plugins_registry" in _args(ds)
    mounts = {m["name"]: m for m in pod_spec(ds)["containers"][0]["volumeMounts"]}
    assert mounts["plugins-registry"]["mountPath"] == "/var/lib/k0s/kubelet/plugins_registry"


def test_plugin_watcher_mode_serves_its_sockets_with_the_real_binary(tmp_path: Any) -> None:
    """The rendered device-plugin args (plugin-watcher, simulation) with the real binary: it
    creates one socket per resource in the plugins_registry dir, stays unready since no
    kubelet registered it, and removes its sockets on SIGTERM."""
    import shutil
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    objs = chartlib.render_objects({"simulation": {"enabled": True}, "devicePlugin": {"registration": "plugin-watcher"}})
    c = pod_spec(one(objs, "DaemonSet", "device-plugin"))["containers"][0]
    # A short root: socket paths must fit sockaddr_un (108 bytes), pytest's tmp_path may not.
    root = Path(tempfile.mkdtemp(prefix="cpw", dir="/tmp"))
    try:
        registry = root / "var/lib/kubelet/plugins_registry"
        registry.mkdir(parents=True)
        port = _free_port()
        args = []
        for a in c["args"]:
            flag, _, value = a.partition("=")
            if value.startswith("0.0.0.0:"):
                a = f"{flag}=127.0.0.1:{port}"
            elif value.startswith("/"):
                a = f"{flag}={root}{value}"
            if a != "--register-node":
                args.append(a)
        env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
        log_path = tmp_path / "device-plugin.log"
        with open(log_path, "w") as log:
            p = subprocess.Popen([_binary_for(c), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                assert _wait_http(f"http://127.0.0.1:{port}/healthz", p) == 200
                want = {"sgx.intel.com-enclave.sock", "sgx.intel.com-provision.sock"}
                deadline = time.monotonic() + 10
                while {f.name for f in registry.iterdir()} != want and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert {f.name for f in registry.iterdir()} == want, log_path.read_text()
                assert all(f.is_socket() for f in registry.iterdir())
                assert _wait_http(f"http://127.0.0.1:{port}/readyz", p) == 503
            finally:
                p.terminate()
                p.wait(timeout=10)
        assert p.returncode == 0, log_path.read_text()
        assert not list(registry.iterdir()), "sockets removed on shutdown"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_all_nodes_and_azure_profile() -> None:
    ds = one(render("azure-all-nodes"), "DaemonSet", "device-plugin")
    assert "--profile=azure" in _args(ds)
    terms = pod_spec(ds)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]


# --- quote helper --------------------------------------------------------------------


def test_quote_helper_daemonset() -> None:
    objs = render("default")
    ds = one(objs, "DaemonSet", "quote-helper")
    spec = pod_spec(ds)
    c = spec["containers"][0]
    assert c["args"][:2] == ["quote-helper", "--socket=/var/run/aesmd/aesm.socket"]
    assert "--backend=dcap" in c["args"]
    assert c["image"].endswith("-dcap")
    hp = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    assert hp["aesmd"] == {"path": "/var/run/aesmd", "type": "DirectoryOrCreate"}
    # SGX devices come from the device plugin's resources, not from privileged or /dev.
    for kind in ("requests", "limits"):
        assert c["resources"][kind]["sgx.intel.com/enclave"] == 1
        assert c["resources"][kind]["sgx.intel.com/provision"] == 1
    assert not any(v["hostPath"]["path"].startswith("/dev") for v in spec["volumes"] if "hostPath" in v)
    # The quote helper must never point SGX_AESM_ADDR at itself.
    assert "SGX_AESM_ADDR" not in {e["name"] for e in c["env"]}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["QCNL_CONF_PATH"] == "/etc/confcom/qcnl/sgx_default_qcnl.conf"
    cm = one(objs, "ConfigMap", "quote-helper")
    qcnl = yaml.safe_load(cm["data"]["sgx_default_qcnl.conf"])
    assert qcnl["pccs_url"] == "http://confcom-pccs.confcom-system.svc:8081/sgx/certification/v4/"
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": "sgx.intel.com/capable", "operator": "In", "values": ["true"]}]}
    ]


def test_quote_helper_can_be_switched_off_like_aks() -> None:
    objs = render("no-quoteHelper")
    assert not [o for o in objs if o["metadata"]["labels"]["app.kubernetes.io/component"] == "quote-helper"]


# --- simulation ----------------------------------------------------------------------


def test_simulation_runs_everything_on_non_sgx_nodes() -> None:
    objs = render("simulation")
    dp = one(objs, "DaemonSet", "device-plugin")
    assert "--platform=sim" in _args(dp) and "--sim-epc=128Mi" in _args(dp)
    qh = one(objs, "DaemonSet", "quote-helper")
    qargs = _args(qh)
    assert "--backend=sim" in qargs and "--sim-state=/var/lib/confcom/sim" in qargs
    c = pod_spec(qh)["containers"][0]
    assert not c["image"].endswith("-dcap")
    assert "sgx.intel.com/enclave" not in c["resources"]["limits"]
    linux_only = [{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]
    for ds in (dp, qh):
        terms = pod_spec(ds)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"] == linux_only
    att = one(objs, "Deployment", "attestation")
    assert _args(att, "sim-export")[:2] == ["sim", "export"]
    assert "--root=/var/lib/confcom/sim-export/root-ca.pem" in _args(att, "attestation")
    assert "SIMULATION MODE" in chartlib.notes({"simulation": {"enabled": True}})
    # A shared simulated PKI from a Secret: read-only everywhere, no host directory for
    # the attestation service and no node pinning.
    objs = render("simulation-shared-state")
    for component, kind in (("quote-helper", "DaemonSet"), ("attestation", "Deployment")):
        spec = pod_spec(one(objs, kind, component))
        (vol,) = [v for v in spec["volumes"] if v["name"] == "sim-state"]
        assert vol["secret"]["secretName"] == "confcom-sim-state"
        mounts = [m for c in containers(spec) for m in c.get("volumeMounts", []) if m["name"] == "sim-state"]
        assert mounts and all(m["readOnly"] is True for m in mounts)
    att = pod_spec(one(objs, "Deployment", "attestation"))
    assert "nodeAffinity" not in att["affinity"]
    assert att["initContainers"][0]["securityContext"]["runAsNonRoot"] is True
    assert "SIMULATION" not in chartlib.notes()


# --- webhook -------------------------------------------------------------------------


def test_mutating_webhook_configuration() -> None:
    objs = render("default")
    (mwc,) = by_kind(objs, "MutatingWebhookConfiguration")
    (wh,) = mwc["webhooks"]
    assert wh["rules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}
    ]
    assert wh["clientConfig"]["service"] == {
        "name": "confcom-webhook",
        "namespace": chartlib.NAMESPACE,
        "path": "/mutate",
        "port": 443,
    }
    assert wh["failurePolicy"] == "Ignore"
    assert wh["reinvocationPolicy"] == "IfNeeded"
    assert wh["sideEffects"] == "None"
    assert wh["timeoutSeconds"] == 5
    assert wh["admissionReviewVersions"] == ["v1"]
    (expr,) = wh["namespaceSelector"]["matchExpressions"]
    assert expr == {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", chartlib.NAMESPACE],
    }
    # Helm-generated certificate: the caBundle is the CA in the Secret the pods mount.
    secret = next(s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == "confcom-webhook-tls")
    assert wh["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert secret["type"] == "kubernetes.io/tls"
    dep = one(objs, "Deployment", "webhook")
    vol = next(v for v in pod_spec(dep)["volumes"] if v["name"] == "tls")
    assert vol["secret"]["secretName"] == "confcom-webhook-tls"
    args = _args(dep)
    assert args[0] == "webhook"
    assert "--tls-cert=/etc/confcom/tls/tls.crt" in args and "--tls-key=/etc/confcom/tls/tls.key" in args
    probe = pod_spec(dep)["containers"][0]["livenessProbe"]["httpGet"]
    assert probe["scheme"] == "HTTPS" and probe["port"] == "https"


def test_generated_webhook_certificate_is_valid_for_the_service() -> None:
    import base64
    import subprocess
    import tempfile

    objs = render("default")
    secret = next(s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == "confcom-webhook-tls")
    with tempfile.TemporaryDirectory() as d:
        for k in ("ca.crt", "tls.crt"):
            with open(f"{d}/{k}", "wb") as f:
                f.write(base64.b64decode(secret["data"][k]))
        try:
            out = subprocess.run(
                ["openssl", "verify", "-CAfile", f"{d}/ca.crt", "-verify_hostname",
                 "confcom-webhook.confcom-system.svc", f"{d}/tls.crt"],
                capture_output=True, text=True, check=False,
            )
        except FileNotFoundError:
            pytest.fail("openssl is not installed: `apt-get install openssl` (.ci/run does)")
        assert out.returncode == 0, out.stdout + out.stderr


def test_webhook_failure_policy_configurable_and_namespaces_deduplicated() -> None:
    objs = render_objects({"webhook": {"failurePolicy": "Fail", "excludeNamespaces": ["gatekeeper-system"]}})
    (mwc,) = by_kind(objs, "MutatingWebhookConfiguration")
    wh = mwc["webhooks"][0]
    assert wh["failurePolicy"] == "Fail"
    assert wh["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-system", chartlib.NAMESPACE, "gatekeeper-system"]
    (mwc,) = by_kind(render("in-kube-system"), "MutatingWebhookConfiguration")
    assert mwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system"]


def test_cert_manager_mode() -> None:
    objs = render("cert-manager")
    (mwc,) = by_kind(objs, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "confcom-system/confcom-webhook"
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"]
    assert "confcom-webhook-tls" not in {s["metadata"]["name"] for s in by_kind(objs, "Secret")}
    (cert,) = by_kind(objs, "Certificate")
    assert cert["spec"]["secretName"] == "confcom-webhook-tls"
    assert "confcom-webhook.confcom-system.svc" in cert["spec"]["dnsNames"]
    assert cert["spec"]["issuerRef"]["name"] == "confcom-webhook-selfsigned"
    assert len(by_kind(objs, "Issuer")) == 1
    objs = render("cert-manager-issuer")
    assert not by_kind(objs, "Issuer")
    assert by_kind(objs, "Certificate")[0]["spec"]["issuerRef"] == {"name": "ca", "kind": "ClusterIssuer"}


# --- attestation and PCCS ------------------------------------------------------------


def test_attestation_and_pccs() -> None:
    import base64

    objs = render("default")
    att = one(objs, "Deployment", "attestation")
    args = _args(att)
    assert args[:2] == ["attest", "serve"]
    assert "--pccs-url=http://confcom-pccs.confcom-system.svc:8081/sgx/certification/v4/" in args
    assert "--signing-key=/etc/confcom/signing/key.pem" in args
    # The key is the Secret's, mounted read-only: never written, rotated by updating the
    # Secret, reread by every replica (docs/operators.md, "Rotating the token signing key").
    assert "--signing-key-read-only" in args and "--signing-key-poll-secs=10" in args
    mount = next(m for m in pod_spec(att)["containers"][0]["volumeMounts"] if m["name"] == "signing-key")
    assert mount == {"name": "signing-key", "mountPath": "/etc/confcom/signing", "readOnly": True}
    assert "--issuer=http://confcom-attestation.confcom-system.svc:8080" in args
    assert "CONFCOM_ATTEST_ADMIN_TOKEN" not in {e["name"] for e in pod_spec(att)["containers"][0]["env"]}
    key = next(v for v in pod_spec(att)["volumes"] if v["name"] == "signing-key")
    assert key["secret"]["secretName"] == "confcom-attestation-signing-key"
    secret = next(s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == "confcom-attestation-signing-key")
    # PKCS#8 (what the service reads), P-256: id-ecPublicKey + prime256v1, SEC1 inside.
    pem = base64.b64decode(secret["data"]["key.pem"]).decode()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n") and pem.endswith("-----END PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    der = base64.b64decode("".join(pem.splitlines()[1:-1]))
    assert der[:29] == bytes.fromhex("308193020100301306072a8648ce3d020106082a8648ce3d0301070479")
    assert der[29:36] == bytes.fromhex("30770201010420") and len(der) == 150
    # A fresh key per install.
    again = next(s for s in by_kind(render("default"), "Secret") if s["metadata"]["name"] == secret["metadata"]["name"])
    assert again["data"]["key.pem"] != secret["data"]["key.pem"]
    pccs = one(objs, "Deployment", "pccs")
    assert pccs["spec"]["replicas"] == 1 and pccs["spec"]["strategy"]["type"] == "Recreate"
    pargs = _args(pccs)
    assert pargs[:2] == ["pccs", "serve"] and "--mode=lazy" in pargs
    assert one(objs, "PersistentVolumeClaim", "pccs")["spec"]["resources"]["requests"]["storage"] == "1Gi"
    svc = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    assert svc["confcom-attestation"]["spec"]["ports"][0]["port"] == 8080
    assert svc["confcom-pccs"]["spec"]["ports"][0]["port"] == 8081

    objs = render("policy-and-existing-key")
    att = one(objs, "Deployment", "attestation")
    assert "--policy=/etc/confcom/policy/policy.yaml" in _args(att)
    env = {e["name"]: e for e in pod_spec(att)["containers"][0]["env"]}
    assert env["CONFCOM_ATTEST_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "attest-admin", "key": "token"}
    assert "confcom-attestation-signing-key" not in {s["metadata"]["name"] for s in by_kind(objs, "Secret")}
    assert next(v for v in pod_spec(att)["volumes"] if v["name"] == "signing-key")["secret"]["secretName"] == "my-key"
    assert "--signing-key-read-only" in _args(att)
    # The whole Secret is mounted (no `items`, no subPath): its retired-*.pem entries are
    # files beside key.pem, and the kubelet updates them in place.
    assert "items" not in next(v for v in pod_spec(att)["volumes"] if v["name"] == "signing-key")["secret"]
    assert all("subPath" not in m for m in pod_spec(att)["containers"][0]["volumeMounts"])
    policy = yaml.safe_load(named(objs, "ConfigMap", "confcom-attestation-policy")["data"]["policy.yaml"])
    assert policy == SCENARIOS["policy-and-existing-key"]["attestation"]["policy"]
    # A string policy (MAA claim rules) is written as it is.
    objs = render("maa-policy")
    assert named(objs, "ConfigMap", "confcom-attestation-policy")["data"]["policy.yaml"].strip() == MAA_POLICY.strip()

    objs = render("no-pccs")
    intel_pcs = "https://api.trustedservices.intel.com/sgx/certification/v4/"
    assert f"--pccs-url={intel_pcs}" in _args(one(objs, "Deployment", "attestation"))
    objs = render("no-pvc-no-pdb")
    assert not by_kind(objs, "PersistentVolumeClaim") and not by_kind(objs, "PodDisruptionBudget")


def _secret_files(objs: list[dict[str, Any]], name: str) -> dict[str, bytes]:
    import base64

    secret = next(s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == name)
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def test_pccs_over_https() -> None:
    import subprocess
    import tempfile

    https_url = "https://confcom-pccs.confcom-system.svc:8081/sgx/certification/v4/"
    objs = render("pccs-tls-policy-signers")
    pccs = one(objs, "Deployment", "pccs")
    c = pod_spec(pccs)["containers"][0]
    assert "--tls-cert=/etc/confcom/pccs-tls/tls.crt" in c["args"]
    assert "--tls-key=/etc/confcom/pccs-tls/tls.key" in c["args"]
    assert c["ports"] == [{"name": "https", "containerPort": 8081, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS" and c[probe]["httpGet"]["port"] == "https"
    assert {"name": "tls", "mountPath": "/etc/confcom/pccs-tls", "readOnly": True} in c["volumeMounts"]
    vols = {v["name"]: v for v in pod_spec(pccs)["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "confcom-pccs-tls"
    assert pccs["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
    svc = next(s for s in by_kind(objs, "Service") if s["metadata"]["name"] == "confcom-pccs")
    assert svc["spec"]["ports"][0]["name"] == "https" and svc["spec"]["ports"][0]["targetPort"] == "https"
    # The generated certificate (a Secret left out of plain manifests, like the webhook's)
    # chains to its ca.crt and names the Service the clients dial.
    secret = next(s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == "confcom-pccs-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["annotations"][chartlib.GENERATED_ANNOTATION] == "true"
    files = _secret_files(objs, "confcom-pccs-tls")
    with tempfile.TemporaryDirectory() as d:
        for k in ("ca.crt", "tls.crt"):
            with open(f"{d}/{k}", "wb") as f:
                f.write(files[k])
        for host in ("confcom-pccs.confcom-system.svc", "confcom-pccs"):
            try:
                out = subprocess.run(["openssl", "verify", "-CAfile", f"{d}/ca.crt", "-verify_hostname", host,
                                      f"{d}/tls.crt"], capture_output=True, text=True, check=False)
            except FileNotFoundError:
                pytest.fail("openssl is not installed: `apt-get install openssl` (.ci/run does)")
            assert out.returncode == 0, out.stdout + out.stderr
    # Clients get https:// URLs; the attestation service trusts the CA (and only the CA:
    # the volume projects ca.crt, not the private key).
    att = one(objs, "Deployment", "attestation")
    ac = pod_spec(att)["containers"][0]
    assert f"--pccs-url={https_url}" in ac["args"]
    assert {"name": "SSL_CERT_FILE", "value": "/etc/confcom/pccs-ca/ca.crt"} in ac["env"]
    assert {"name": "pccs-ca", "mountPath": "/etc/confcom/pccs-ca", "readOnly": True} in ac["volumeMounts"]
    avols = {v["name"]: v for v in pod_spec(att)["volumes"]}
    assert avols["pccs-ca"]["secret"] == {"secretName": "confcom-pccs-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    cm = one(objs, "ConfigMap", "quote-helper")
    qcnl = yaml.safe_load(cm["data"]["sgx_default_qcnl.conf"])
    assert qcnl["pccs_url"] == https_url
    # Helm's self-signed CA is not in the node's store: QCNL keeps use_secure_cert false.
    assert qcnl["use_secure_cert"] is False
    default_qh = one(render("default"), "DaemonSet", "quote-helper")
    qh = one(objs, "DaemonSet", "quote-helper")
    assert (qh["spec"]["template"]["metadata"]["annotations"]["checksum/qcnl"]
            != default_qh["spec"]["template"]["metadata"]["annotations"]["checksum/qcnl"])

    # cert-manager: a Certificate for the same Secret, with its own self-signed Issuer.
    objs = render("pccs-tls-cert-manager")
    assert "confcom-pccs-tls" not in {s["metadata"]["name"] for s in by_kind(objs, "Secret")}
    (cert,) = by_kind(objs, "Certificate")
    assert cert["metadata"]["labels"]["app.kubernetes.io/component"] == "pccs"
    assert cert["spec"]["secretName"] == "confcom-pccs-tls"
    assert "confcom-pccs.confcom-system.svc" in cert["spec"]["dnsNames"]
    assert cert["spec"]["issuerRef"]["name"] == "confcom-pccs-selfsigned"
    assert [i["metadata"]["name"] for i in by_kind(objs, "Issuer")] == ["confcom-pccs-selfsigned"]
    assert "SSL_CERT_FILE" in {e["name"] for e in pod_spec(one(objs, "Deployment", "attestation"))["containers"][0]["env"]}

    # An existing Secret with a publicly trusted certificate: nothing generated, the system
    # store is used (no CA mount, no SSL_CERT_FILE), the URL still https://.
    objs = render("pccs-tls-public-cert")
    assert not by_kind(objs, "Certificate")
    assert "confcom-pccs-tls" not in {s["metadata"]["name"] for s in by_kind(objs, "Secret")}
    vols = {v["name"]: v for v in pod_spec(one(objs, "Deployment", "pccs"))["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "pccs-cert"
    att = one(objs, "Deployment", "attestation")
    assert f"--pccs-url={https_url}" in _args(att)
    assert "SSL_CERT_FILE" not in {e["name"] for e in pod_spec(att)["containers"][0]["env"]}
    assert "pccs-ca" not in {v["name"] for v in pod_spec(att)["volumes"]}

    # An explicit attestation.pccsUrl or simulation: the attestation service does not use
    # the chart's PCCS, so it gets no CA.
    for values in ({"pccs": {"tls": {"enabled": True}}, "attestation": {"pccsUrl": "https://pccs.example/sgx/certification/v4/"}},
                   {"pccs": {"tls": {"enabled": True}}, "simulation": {"enabled": True}}):
        att = one(render_objects(values), "Deployment", "attestation")
        assert "SSL_CERT_FILE" not in {e["name"] for e in pod_spec(att)["containers"][0]["env"]}
        assert "pccs-ca" not in {v["name"] for v in pod_spec(att)["volumes"]}

    # ServiceMonitor scrapes the PCCS over HTTPS.
    objs = render_objects({"pccs": {"tls": {"enabled": True}}, "metrics": {"serviceMonitor": {"enabled": True}}})
    sm = next(o for o in by_kind(objs, "ServiceMonitor") if o["metadata"]["name"] == "confcom-pccs")
    assert sm["spec"]["endpoints"][0]["port"] == "https" and sm["spec"]["endpoints"][0]["scheme"] == "https"

    # Default: plain HTTP, no TLS objects or flags.
    objs = render("default")
    c = pod_spec(one(objs, "Deployment", "pccs"))["containers"][0]
    assert not [a for a in c["args"] if a.startswith("--tls-")]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "confcom-pccs-tls" not in {s["metadata"]["name"] for s in by_kind(objs, "Secret")}


def test_policy_signer_certificates() -> None:
    objs = render("pccs-tls-policy-signers")
    att = one(objs, "Deployment", "attestation")
    args = _args(att)
    assert [a for a in args if a.startswith("--policy-signer-cert")] == [
        "--policy-signer-cert=/etc/confcom/policy-signers/signer-0.pem",
        "--policy-signer-cert=/etc/confcom/policy-signers/signer-1.pem",
    ]
    c = pod_spec(att)["containers"][0]
    assert {"name": "policy-signers", "mountPath": "/etc/confcom/policy-signers", "readOnly": True} in c["volumeMounts"]
    vols = {v["name"]: v for v in pod_spec(att)["volumes"]}
    assert vols["policy-signers"]["configMap"]["name"] == "confcom-attestation-policy-signers"
    cm = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == "confcom-attestation-policy-signers")
    assert {k: v.strip() for k, v in cm["data"].items()} == {
        "signer-0.pem": SIGNER_PEM.strip(), "signer-1.pem": SIGNER_PEM_OLD.strip()}
    # Pods roll when the signer set changes.
    assert "checksum/policy-signers" in att["spec"]["template"]["metadata"]["annotations"]
    # Default: no flag, no ConfigMap, no volume.
    objs = render("default")
    att = one(objs, "Deployment", "attestation")
    assert not [a for a in _args(att) if a.startswith("--policy-signer-cert")]
    assert "policy-signers" not in {v["name"] for v in pod_spec(att)["volumes"]}
    assert "confcom-attestation-policy-signers" not in {o["metadata"]["name"] for o in by_kind(objs, "ConfigMap")}


def test_attestation_runtime_state_configmap() -> None:
    objs = render("default")
    att = one(objs, "Deployment", "attestation")
    args = _args(att)
    assert [a for a in args if a.startswith("--state-")] == [
        "--state-configmap=confcom-attestation-state",
        "--state-namespace=confcom-system",
        "--state-poll-secs=5",
        "--state-max-staleness-secs=300",
    ]
    spec = pod_spec(att)
    assert spec["serviceAccountName"] == "confcom-attestation"
    # No automounted token: a short-lived projected one, in the attestation container only.
    assert spec["automountServiceAccountToken"] is False
    assert named(objs, "ServiceAccount", "confcom-attestation")["automountServiceAccountToken"] is False
    (vol,) = [v for v in spec["volumes"] if v["name"] == "kube-api-access"]
    sources = vol["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}
    assert sources[1] == {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
    assert sources[2]["downwardAPI"]["items"] == [
        {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]
    for scenario in ("default", "simulation"):
        spec = pod_spec(one(render(scenario), "Deployment", "attestation"))
        mounted = {c["name"]: [m for m in c.get("volumeMounts", []) if m["name"] == "kube-api-access"]
                   for c in containers(spec)}
        assert mounted.pop("attestation") == [{
            "name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True}], scenario
        assert mounted and not any(mounted.values()) if scenario == "simulation" else not mounted, mounted
    # Rendered empty (the servers write it, upgrades leave it alone) and kept on uninstall.
    cm = named(objs, "ConfigMap", "confcom-attestation-state")
    assert "data" not in cm and "binaryData" not in cm
    assert cm["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert cm["metadata"]["namespace"] == chartlib.NAMESPACE
    # Least privilege: get and update of that one ConfigMap, for that one ServiceAccount.
    role = named(objs, "Role", "confcom-attestation-state")
    assert role["rules"] == [{
        "apiGroups": [""], "resources": ["configmaps"],
        "resourceNames": ["confcom-attestation-state"], "verbs": ["get", "update"],
    }]
    binding = named(objs, "RoleBinding", "confcom-attestation-state")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "confcom-attestation-state"}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "confcom-attestation", "namespace": chartlib.NAMESPACE}]

    objs = render_objects({"attestation": {"runtimeState": {"pollSeconds": 30, "maxStalenessSeconds": 0}}},
                          namespace="kube-system")
    args = _args(one(objs, "Deployment", "attestation"))
    assert "--state-poll-secs=30" in args and "--state-namespace=kube-system" in args
    assert "--state-max-staleness-secs=0" in args
    # A limit shorter than two polls would flap: refused at render time.
    with pytest.raises(Exception, match="at least twice pollSeconds"):
        render_objects({"attestation": {"runtimeState": {"pollSeconds": 30, "maxStalenessSeconds": 40}}})

    # Off: today's in-memory behaviour, no API token, no RBAC, no ConfigMap.
    objs = render_objects({"attestation": {"runtimeState": {"enabled": False}}})
    att = one(objs, "Deployment", "attestation")
    assert not [a for a in _args(att) if a.startswith("--state-")]
    assert pod_spec(att)["automountServiceAccountToken"] is False
    assert named(objs, "ServiceAccount", "confcom-attestation")["automountServiceAccountToken"] is False
    assert "kube-api-access" not in {v["name"] for v in pod_spec(att)["volumes"]}
    assert not by_kind(objs, "Role") and not by_kind(objs, "RoleBinding")
    assert "confcom-attestation-state" not in {o["metadata"]["name"] for o in by_kind(objs, "ConfigMap")}
    for o in objs:
        validate(o)


# --- samples -------------------------------------------------------------------------


def test_samples_validate_against_kubernetes_1_30() -> None:
    found = chartlib.sample_objects()
    files = {p.parent.name for p, _ in found}
    assert {"helloworld", "attested-app"} <= files
    for path, obj in found:
        try:
            validate(obj)
        except Exception as e:  # noqa: BLE001 - name the file in the failure
            raise AssertionError(f"{path}: {e}") from e


def test_samples_request_epc_as_the_docs_say() -> None:
    limits = []
    annotations = []
    for _, obj in chartlib.sample_objects():
        spec = pod_spec(obj)
        if spec is None:
            continue
        meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
        annotations.append(meta.get("annotations") or {})
        for c in spec["containers"]:
            lim = c.get("resources", {}).get("limits", {})
            limits.append(lim)
            # EPC requests must equal limits (the webhook denies anything else).
            req = c.get("resources", {}).get("requests", {})
            for name in ("sgx.intel.com/epc", "kubernetes.azure.com/sgx_epc_mem_in_MiB"):
                if name in req:
                    assert req[name] == lim[name]
    assert {"sgx.intel.com/epc": "10Mi"}.items() <= next(l for l in limits if "sgx.intel.com/epc" in l).items()
    assert any(l.get("kubernetes.azure.com/sgx_epc_mem_in_MiB") == 10 for l in limits)
    assert any(a.get("sgx.intel.com/quote-provider") == "aesmd" for a in annotations)


# --- container image -----------------------------------------------------------------


def test_dockerfile_builds_the_binaries_into_a_small_nonroot_image() -> None:
    text = (chartlib.REPO / "Dockerfile").read_text()
    stages = [line.split() for line in text.splitlines() if line.startswith("FROM ")]
    names = [s[-1] for s in stages]
    assert names == ["build", "dcap", "runtime"], names
    assert stages[0][1].startswith("rust:${RUST_VERSION}") and "ARG RUST_VERSION=1.95" in text
    # The default image (the last stage) is distroless and non-root; Intel's libraries
    # only come with the dcap target.
    assert stages[-1][1] == "gcr.io/distroless/cc-debian12:nonroot"
    # The `dist` profile (root Cargo.toml) builds `confcom`, `dist-small` the device plugin's own
    # binary (the one that stays resident on every node).
    assert "cargo build --profile dist --locked -p confcom " in text
    assert "cargo build --profile dist-small --locked -p device-plugin --bin confcom-device-plugin" in text
    cargo_toml = (chartlib.REPO / "Cargo.toml").read_text()
    assert re.search(r"^\[profile\.dist\]$", cargo_toml, re.MULTILINE)
    assert re.search(r"^\[profile\.dist-small\]$", cargo_toml, re.MULTILINE)
    assert "install -D -m 0755 target/dist/confcom /out/confcom" in text
    assert "install -D -m 0755 target/dist-small/confcom-device-plugin /out/confcom-device-plugin" in text
    assert set(IMAGE_BINARIES) == {"confcom", "confcom-device-plugin"}
    runtime = text[text.index("AS runtime"):]
    # Both runtime stages carry every binary the chart starts.
    for stage in (text[text.index("AS dcap"):text.index("AS runtime")], runtime):
        copied = re.search(r"^COPY --from=build ((?:/out/\S+ )+)/usr/local/bin/$", stage, re.MULTILINE)
        assert copied, stage
        assert copied.group(1).split() == [f"/out/{n}" for n in IMAGE_BINARIES]
    assert "libsgx" not in runtime and "USER 65532" in runtime
    assert 'ENTRYPOINT ["/usr/local/bin/confcom"]' in runtime
    assert "libsgx-dcap-ql" in text[text.index("AS dcap"):text.index("AS runtime")]
    # Intel's library treats SGX_AESM_ADDR as set even when empty.
    assert "ENV SGX_AESM_ADDR" not in text
    ignored = (chartlib.REPO / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored


# --- the chart's flags exist in the binary ---------------------------------------------

# What the image installs into /usr/local/bin; `confcom` is its entrypoint.
IMAGE_BINARIES = ["confcom", "confcom-device-plugin"]


def _confcom_binary() -> str | None:
    import os

    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or chartlib.REPO / "target")
    if not target.is_absolute():
        target = chartlib.REPO / target
    for candidate in (os.environ.get("CONFCOM_BIN"), target / "debug" / "confcom",
                      target / "release" / "confcom"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _program(c: dict[str, Any]) -> str:
    """The image binary a container runs: the one its `command` names, else the entrypoint."""
    if "command" not in c:
        return "confcom"
    command = c["command"]
    assert len(command) == 1 and command[0].startswith("/usr/local/bin/"), command
    name = command[0].removeprefix("/usr/local/bin/")
    assert name in IMAGE_BINARIES, f"{c['name']} runs {command[0]}, which the image does not install"
    return name


def _binary_for(c: dict[str, Any]) -> str:
    """The local build of the binary a container runs: `confcom`, or a sibling of it (same
    directory, e.g. target/debug/confcom-device-plugin)."""
    import os
    from pathlib import Path

    binary = _confcom_binary()
    if binary is None:
        pytest.fail("no confcom binary: run `cargo build -p confcom` first, or set CONFCOM_BIN")
    name = _program(c)
    if name == "confcom":
        return binary
    sibling = Path(binary).parent / name
    if not os.access(sibling, os.X_OK):
        pytest.fail(f"no {sibling} (the {c['name']} container runs it): "
                    "run `cargo build -p device-plugin --bins` first")
    return str(sibling)


def _chart_invocations() -> dict[tuple[str, ...], tuple[dict[str, Any], set[str]]]:
    """Binary and subcommand path -> a container running it, and every --flag the chart
    passes to it (all scenarios)."""
    found: dict[tuple[str, ...], tuple[dict[str, Any], set[str]]] = {}
    for scenario in SCENARIOS:
        for obj in render(scenario):
            spec = pod_spec(obj)
            if spec is None:
                continue
            for c in containers(spec):
                args = c.get("args", [])
                sub = tuple(a for a in args[:2] if not a.startswith("-"))
                flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
                found.setdefault((_program(c), *sub), (c, set()))[1].update(flags)
    return found


def test_chart_passes_only_flags_the_binary_knows() -> None:
    import subprocess

    invocations = _chart_invocations()
    assert set(invocations) == {
        ("confcom-device-plugin",), ("confcom", "quote-helper"), ("confcom", "webhook"),
        ("confcom", "pccs", "serve"), ("confcom", "attest", "serve"), ("confcom", "sim", "export"),
    }
    missing = []
    for (program, *sub), (c, flags) in sorted(invocations.items(), key=lambda kv: kv[0]):
        shown = " ".join([program, *sub])
        out = subprocess.run([_binary_for(c), *sub, "--help"], capture_output=True, text=True, timeout=30,
                             check=False)
        assert out.returncode == 0, f"{shown} --help: {out.stderr}"
        for flag in sorted(flags):
            if not re.search(rf"(^|[\s,]){re.escape(flag)}([\s=<\[,]|$)", out.stdout, re.MULTILINE):
                missing.append(f"{shown} {flag}")
    assert not missing, "flags the chart passes but the binary does not know:\n" + "\n".join(missing)


def _signing_key_pem() -> bytes:
    """A fresh token signing key, as the chart generates one (a default render's Secret)."""
    import base64

    secret = next(s for s in by_kind(render("default"), "Secret")
                  if s["metadata"]["name"].endswith("-attestation-signing-key"))
    return base64.b64decode(secret["data"]["key.pem"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: Any, ca: str | None = None, timeout: float = 20.0) -> int:
    import ssl
    import time
    import urllib.error
    import urllib.request

    ctx = None
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False  # the certificate names the Service, we dial 127.0.0.1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def _check_served_certificate(port: int, ca: str, hostname: str) -> None:
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=hostname) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize(
    "scenario", ["default", "simulation", "pccs-tls-policy-signers", "policy-and-existing-key", "maa-policy"]
)
def test_rendered_services_start_with_the_real_binary(scenario: str, tmp_path: Any) -> None:
    """Runs each service container of a render, with the binary its command names (else
    `confcom`) and its exact args (paths moved under a temp dir, listeners moved to free
    loopback ports), and waits for /healthz."""
    import base64
    import subprocess
    from pathlib import Path

    binary = _confcom_binary()
    if binary is None:
        pytest.fail("no confcom binary: run `cargo build -p confcom` first, or set CONFCOM_BIN")
    objs = render(scenario)
    # Secrets and ConfigMaps become files, where the pods would mount them.
    files: dict[str, dict[str, bytes]] = {}
    for o in objs:
        if o["kind"] == "Secret":
            files[o["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in o["data"].items()}
        elif o["kind"] == "ConfigMap":
            files[o["metadata"]["name"]] = {k: v.encode() for k, v in o.get("data", {}).items()}
    existing_key = SCENARIOS[scenario].get("attestation", {}).get("signingKey", {}).get("existingSecret")
    if existing_key:
        # The user's Secret (not rendered; the service never generates the key): a key as
        # the chart would make one.
        files[existing_key] = {"key.pem": _signing_key_pem()}
    root = tmp_path / "fs"

    def place(spec: dict[str, Any], c: dict[str, Any]) -> None:
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for m in c.get("volumeMounts", []):
            d = root / m["mountPath"].lstrip("/")
            d.mkdir(parents=True, exist_ok=True)
            source = vols[m["name"]].get("secret") or vols[m["name"]].get("configMap") or {}
            src = source.get("secretName") or source.get("name")
            # `items` projects only some keys (the attestation service gets only the
            # PCCS's ca.crt).
            paths = {i["key"]: i["path"] for i in source["items"]} if "items" in source else None
            for k, v in files.get(src, {}).items():
                if paths is None or k in paths:
                    (d / (paths[k] if paths else k)).write_bytes(v)

    def rewrite(arg: str, ports: dict[str, int]) -> str:
        flag, _, value = arg.partition("=")
        if value.startswith("0.0.0.0:"):
            port = _free_port()
            ports[value.split(":")[1]] = port
            return f"{flag}=127.0.0.1:{port}"
        if value.startswith("/"):
            return f"{flag}={root}{value}"
        return arg

    procs = []
    try:
        for o in objs:
            spec = pod_spec(o)
            if spec is None:
                continue
            env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "CONFCOM_LOG_FORMAT": "json"}
            for c in containers(spec):
                place(spec, c)
            # The main container's literal env (SSL_CERT_FILE...), file paths moved like the args.
            env.update({e["name"]: rewrite(f"={e['value']}", {})[1:]
                        for e in spec["containers"][0].get("env", []) if "value" in e})
            for c in spec.get("initContainers", []):
                out = subprocess.run([_binary_for(c), *[rewrite(a, {}) for a in c["args"]]], env=env,
                                     capture_output=True, text=True, timeout=60, check=False)
                assert out.returncode == 0, f"{c['name']}: {out.stderr}"
            c = spec["containers"][0]
            ports: dict[str, int] = {}
            args = [rewrite(a, ports) for a in c["args"]]
            if c["name"] == "device-plugin":
                # Outside a cluster: no kubelet to register with, no API server for the registrar.
                args = [a for a in args if a != "--register-node"]
            if any(a.startswith("--state-configmap=") for a in args):
                # Outside a cluster: no API server for the runtime state ConfigMap; the same
                # state in a directory instead.
                args = [a for a in args if not a.startswith(("--state-configmap=", "--state-namespace="))]
                args.append(f"--state-dir={tmp_path / 'attestation-state'}")
            log = open(tmp_path / f"{c['name']}.log", "w")
            # The binary the container's command names (the device plugin's own), else `confcom`.
            p = subprocess.Popen([_binary_for(c), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append((c["name"], p, log))
            if "--backend=dcap" in args:
                # No SGX and no Intel libraries here: it must refuse to start, saying what is missing.
                assert p.wait(timeout=20) != 0
                assert "libsgx_dcap_ql.so.1" in (tmp_path / "quote-helper.log").read_text()
                continue
            probe = c["livenessProbe"]["httpGet"]
            named = {pt["name"]: str(pt["containerPort"]) for pt in c["ports"]}
            port = ports[named[probe["port"]]]
            scheme = probe.get("scheme", "HTTP").lower()
            ca = None
            if scheme == "https":
                # The ca.crt next to the certificate the container serves.
                cert = next(a for a in args if a.startswith("--tls-cert=")).split("=", 1)[1]
                ca = str(Path(cert).parent / "ca.crt")
            try:
                status = _wait_http(f"{scheme}://127.0.0.1:{port}{probe['path']}", p, ca)
            except AssertionError as e:
                raise AssertionError(f"{c['name']} {args}: {e}\n{(tmp_path / (c['name'] + '.log')).read_text()}")
            assert status == 200, c["name"]
            if any(a.startswith("--state-dir=") for a in args):
                # Ready once the runtime state was read.
                ready = c["readinessProbe"]["httpGet"]["path"]
                assert _wait_http(f"{scheme}://127.0.0.1:{port}{ready}", p, ca) == 200, c["name"]
            if ca:
                # The served chain verifies for the Service name clients dial.
                _check_served_certificate(port, ca, f"{o['metadata']['name']}.{chartlib.NAMESPACE}.svc")
        assert {n for n, _, _ in procs} == {"device-plugin", "quote-helper", "webhook", "attestation", "pccs"}
        if scenario == "simulation":
            # What samples/attested-app does in a pod: quote over the quote helper's socket,
            # attest at the attestation service, verify the token against /certs.
            qh = one(objs, "DaemonSet", "quote-helper")
            socket = next(a for a in _args(qh) if a.startswith("--socket="))
            attest_port = next(p for n, p, _ in procs if n == "attestation").args
            url = next(a for a in attest_port if a.startswith("--listen=")).split("=", 1)[1]
            runtime = tmp_path / "runtime.json"
            runtime.write_text('{"pod":"attested-app","time":1}')
            import hashlib

            digest = hashlib.sha256(runtime.read_bytes()).hexdigest()
            env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
            out = subprocess.run([binary, "quote", rewrite(socket, {}), "--report-data", digest,
                                  "--out", str(tmp_path / "quote.bin")],
                                 env=env, capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 0, out.stderr
            out = subprocess.run([binary, "attest", "--url", f"http://{url}", "--quote", str(tmp_path / "quote.bin"),
                                  "--runtime-data", str(runtime), "--runtime-data-json", "--json"],
                                 env=env, capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 0, out.stderr
            claims = yaml.safe_load(out.stdout)
            assert claims["x-ms-runtime"] == {"pod": "attested-app", "time": 1}
            assert claims["x-ms-sgx-report-data"].startswith(digest)
            assert claims["iss"] == "http://confcom-attestation.confcom-system.svc:8080"
        for name, p, _ in procs:
            if "--backend=dcap" not in p.args:
                assert p.poll() is None, f"{name} exited: {(tmp_path / (name + '.log')).read_text()}"
    finally:
        for _, p, log in procs:
            p.terminate()
        for _, p, log in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
            log.close()


def test_signing_key_rotates_through_the_secret_with_the_real_binary(tmp_path: Any) -> None:
    """The documented two-step rotation (docs/operators.md, "Rotating the token signing key")
    with the real binary and the rendered attestation args, on a Secret volume laid out as the
    kubelet does (each entry a symlink into `..data`, which an update swaps): POST
    /keys:rotate answers 409 naming the two steps, the new key is published (as
    retired-next.pem) before it signs, the new key.pem signs after a poll with the old key
    still in /certs, and nothing is written into the volume."""
    import base64
    import json
    import os
    import subprocess
    import time
    import urllib.error
    import urllib.request

    binary = _confcom_binary()
    if binary is None:
        pytest.fail("no confcom binary: run `cargo build -p confcom` first, or set CONFCOM_BIN")
    objs = render("default")
    spec = pod_spec(one(objs, "Deployment", "attestation"))
    c = spec["containers"][0]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "signing-key")
    secret = next(v for v in spec["volumes"] if v["name"] == "signing-key")["secret"]["secretName"]
    root = tmp_path / "fs"
    vol = root / mount["mountPath"].lstrip("/")
    vol.mkdir(parents=True)

    def publish(version: str, entries: dict[str, bytes]) -> None:
        """What the kubelet does on a Secret update: a new timestamped directory, `..data`
        swapped to it atomically, a symlink per entry, names no longer there removed."""
        d = vol / f"..{version}"
        d.mkdir()
        for k, data in entries.items():
            (d / k).write_bytes(data)
        os.symlink(d.name, vol / "..data_tmp")
        os.replace(vol / "..data_tmp", vol / "..data")
        for k in entries:
            if not (vol / k).is_symlink():
                os.symlink(f"..data/{k}", vol / k)
        for p in vol.iterdir():
            if not p.name.startswith("..") and p.name not in entries:
                p.unlink()

    old = base64.b64decode(named(objs, "Secret", secret)["data"]["key.pem"])
    new = _signing_key_pem()
    publish("2026_11_01_00_00", {"key.pem": old})
    port = _free_port()
    args = []
    for a in c["args"]:
        flag, _, value = a.partition("=")
        if flag == "--listen":
            a = f"--listen=127.0.0.1:{port}"
        elif flag == "--signing-key-poll-secs":
            a = "--signing-key-poll-secs=1"  # the chart's 10 s, shortened for the test
        elif flag in ("--state-configmap", "--state-namespace"):
            continue  # no API server here: the same state in a directory
        elif value.startswith("/"):
            a = f"{flag}={root}{value}"
        args.append(a)
    args.append(f"--state-dir={tmp_path / 'state'}")
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "CONFCOM_LOG_FORMAT": "json",
           "CONFCOM_ATTEST_ADMIN_TOKEN": "t0ken"}
    base = f"http://127.0.0.1:{port}"

    def kids() -> list[str]:
        with urllib.request.urlopen(f"{base}/certs", timeout=5) as r:
            return [k["kid"] for k in json.load(r)["keys"]]

    with open(tmp_path / "attestation.log", "w") as log:
        p = subprocess.Popen([binary, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert _wait_http(f"{base}/healthz", p) == 200, (tmp_path / "attestation.log").read_text()
        (old_kid,) = kids()
        req = urllib.request.Request(f"{base}/keys:rotate", method="POST",
                                     headers={"Authorization": "Bearer t0ken"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 409
        body = json.load(refused.value)
        assert body["error"]["code"] == "KeyRotationManagedExternally", body
        message = body["error"]["message"]
        assert "two steps" in message and message.index("retired-next.pem") < message.index("key.pem and keep"), message

        # Step 1: the new key published, the old one still signing.
        publish("2026_11_28_00_00", {"key.pem": old, "retired-next.pem": new})
        deadline = time.monotonic() + 15
        while len(kids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        published = kids()
        assert len(published) == 2 and published[0] == old_kid, published
        new_kid = published[1]
        # Step 3: the new key signs, the old one stays published.
        publish("2026_11_28_00_05", {"key.pem": new, "retired-1.pem": old})
        deadline = time.monotonic() + 15
        while kids()[0] == old_kid and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kids() == [new_kid, old_kid]
        # The retired entry removed early: the replica still publishes the key it replaced.
        publish("2026_11_28_00_01", {"key.pem": new})
        time.sleep(2.5)
        assert kids() == [new_kid, old_kid]
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(timeout=10)
    log = (tmp_path / "attestation.log").read_text()
    changed = [json.loads(line) for line in log.splitlines() if "token signing key changed" in line]
    assert len(changed) == 1, log
    fields = changed[0].get("fields", changed[0])
    assert (fields["previous"], fields["kid"]) == (old_kid, new_kid), changed[0]
    # Read-only: nothing written into the volume (only the kubelet's own names).
    assert {x.name for x in vol.iterdir()} == {
        "..data", "..2026_11_01_00_00", "..2026_11_28_00_00", "..2026_11_28_00_05", "..2026_11_28_00_01",
        "key.pem"}
