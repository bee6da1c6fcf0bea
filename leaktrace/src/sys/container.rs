//! Container attribution from a cgroup path string (v1 or v2), as found in
//! `/proc/<pid>/cgroup` or in kernel OOM messages (`task_memcg=`).
//!
//! Reads nothing itself: it recognises the path layouts written by Docker,
//! containerd (CRI and nerdctl), CRI-O, Podman and the kubelet (cgroupfs and
//! systemd cgroup drivers) and extracts the 64-hex container id, the
//! Kubernetes pod UID and QoS class.

use serde::Serialize;

/// Container runtime that created the cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
    /// A bare 64-hex id whose parent does not name the runtime, e.g. the
    /// kubelet cgroupfs layout `/kubepods/<qos>/pod<uid>/<id>`, which is the
    /// same for containerd and cri-dockerd.
    Unknown,
}

/// Who a cgroup belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ContainerInfo {
    pub runtime: Runtime,
    /// Full 64-hex container id, lower-case.
    pub id: String,
    /// Kubernetes pod UID with dashes (`1b0e8f7a-3c2d-…`), if under kubepods.
    pub pod_uid: Option<String>,
    /// `guaranteed`, `burstable` or `besteffort`, if under kubepods.
    pub qos: Option<String>,
}

/// Attribute a cgroup path to a container. The innermost (last) container
/// component wins, so nested layouts (kind, docker-in-docker) give the inner
/// container. Host paths (`/`, `/user.slice/…`, `/system.slice/sshd.service`)
/// and runtime helper scopes (`crio-conmon-…`, `libpod-conmon-…`) give `None`.
pub fn attribute(cgroup_path: &str) -> Option<ContainerInfo> {
    let comps: Vec<&str> = cgroup_path.split('/').filter(|c| !c.is_empty()).collect();
    let (idx, runtime, id) = comps.iter().enumerate().rev().find_map(|(i, comp)| {
        let parent = if i > 0 { comps[i - 1] } else { "" };
        container_component(comp, parent).map(|(rt, id)| (i, rt, id))
    })?;
    let ancestors = &comps[..idx];
    let (pod_uid, qos) = kube_info(ancestors);
    Some(ContainerInfo {
        runtime,
        id,
        pod_uid,
        qos,
    })
}

/// Recognise one path component as a container cgroup.
fn container_component(comp: &str, parent: &str) -> Option<(Runtime, String)> {
    if is_hex64(comp) {
        let runtime = match parent {
            "docker" => Runtime::Docker,
            // GitHub-hosted runners start job containers with
            // docker --cgroup-parent=actions_job.
            "actions_job" => Runtime::Docker,
            _ => Runtime::Unknown,
        };
        return Some((runtime, comp.to_ascii_lowercase()));
    }
    let name = comp.strip_suffix(".scope").unwrap_or(comp);
    const PREFIXES: [(&str, Runtime); 5] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("nerdctl-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("libpod-", Runtime::Podman),
    ];
    PREFIXES.iter().find_map(|(prefix, rt)| {
        let id = name.strip_prefix(prefix)?;
        is_hex64(id).then(|| (*rt, id.to_ascii_lowercase()))
    })
}

/// Pod UID and QoS class from the ancestors of the container component.
fn kube_info(ancestors: &[&str]) -> (Option<String>, Option<String>) {
    let Some(root) = ancestors
        .iter()
        .rposition(|c| *c == "kubepods" || *c == "kubepods.slice")
    else {
        return (None, None);
    };
    let below = &ancestors[root + 1..];
    let pod_pos = below.iter().rposition(|c| pod_uid_of(c).is_some());
    let pod_uid = pod_pos.and_then(|p| pod_uid_of(below[p]));
    let between = &below[..pod_pos.unwrap_or(below.len())];
    let mut qos = None;
    for c in between {
        match *c {
            "burstable" | "kubepods-burstable.slice" => qos = Some("burstable"),
            "besteffort" | "kubepods-besteffort.slice" => qos = Some("besteffort"),
            _ => {}
        }
    }
    if qos.is_none() && pod_uid.is_some() {
        // Guaranteed pods sit directly under the kubepods root.
        qos = Some("guaranteed");
    }
    (pod_uid, qos.map(str::to_string))
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(comp: &str) -> Option<String> {
    let raw = if let Some(slice) = comp.strip_suffix(".slice") {
        if !slice.starts_with("kubepods-") {
            return None;
        }
        slice.rsplit('-').next()?.strip_prefix("pod")?
    } else {
        comp.strip_prefix("pod")?
    };
    let ok_len = raw.len() == 32 || raw.len() == 36;
    let ok_chars = raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    (ok_len && ok_chars).then(|| raw.replace('_', "-").to_ascii_lowercase())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "58e2d5978244ab31f8988c378e6743cb4dd96062d28548032edcebe07f17790f";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "1b0e8f7a-3c2d-4e5f-9a8b-7c6d5e4f3a2b";
    const UID_US: &str = "1b0e8f7a_3c2d_4e5f_9a8b_7c6d5e4f3a2b";

    fn info(runtime: Runtime, pod: Option<&str>, qos: Option<&str>) -> Option<ContainerInfo> {
        Some(ContainerInfo {
            runtime,
            id: ID.to_string(),
            pod_uid: pod.map(str::to_string),
            qos: qos.map(str::to_string),
        })
    }

    #[test]
    fn docker_cgroupfs() {
        assert_eq!(attribute(&format!("/docker/{ID}")), info(Runtime::Docker, None, None));
    }

    #[test]
    fn docker_systemd() {
        assert_eq!(
            attribute(&format!("/system.slice/docker-{ID}.scope")),
            info(Runtime::Docker, None, None)
        );
    }

    #[test]
    fn kubepods_cgroupfs_burstable() {
        assert_eq!(
            attribute(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            info(Runtime::Unknown, Some(UID), Some("burstable"))
        );
    }

    #[test]
    fn kubepods_cgroupfs_besteffort() {
        assert_eq!(
            attribute(&format!("/kubepods/besteffort/pod{UID}/{ID}")),
            info(Runtime::Unknown, Some(UID), Some("besteffort"))
        );
    }

    #[test]
    fn kubepods_cgroupfs_guaranteed() {
        assert_eq!(
            attribute(&format!("/kubepods/pod{UID}/{ID}")),
            info(Runtime::Unknown, Some(UID), Some("guaranteed"))
        );
    }

    #[test]
    fn kubepods_systemd_containerd() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(attribute(&p), info(Runtime::Containerd, Some(UID), Some("burstable")));
    }

    #[test]
    fn kubepods_systemd_crio() {
        let p =
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/crio-{ID}.scope");
        assert_eq!(attribute(&p), info(Runtime::Crio, Some(UID), Some("besteffort")));
    }

    #[test]
    fn kubepods_systemd_guaranteed() {
        let p = format!("/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope");
        assert_eq!(attribute(&p), info(Runtime::Containerd, Some(UID), Some("guaranteed")));
    }

    #[test]
    fn crio_conmon_is_not_a_container() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(attribute(&p), None);
    }

    #[test]
    fn podman_rootful_and_rootless() {
        assert_eq!(
            attribute(&format!("/machine.slice/libpod-{ID}.scope")),
            info(Runtime::Podman, None, None)
        );
        assert_eq!(
            attribute(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            info(Runtime::Podman, None, None)
        );
        assert_eq!(
            attribute(&format!("/libpod_parent/libpod-{ID}")),
            info(Runtime::Podman, None, None)
        );
        assert_eq!(attribute(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
    }

    #[test]
    fn github_actions_job() {
        assert_eq!(
            attribute(&format!("/actions_job/{ID}")),
            info(Runtime::Docker, None, None)
        );
    }

    #[test]
    fn nerdctl_and_bare_ids() {
        assert_eq!(
            attribute(&format!("/system.slice/nerdctl-{ID}.scope")),
            info(Runtime::Containerd, None, None)
        );
        assert_eq!(attribute(&format!("/k8s.io/{ID}")), info(Runtime::Unknown, None, None));
    }

    #[test]
    fn nested_innermost_wins() {
        // kind: a k8s node in a docker container.
        let p = format!("/docker/{ID2}/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(attribute(&p), info(Runtime::Unknown, Some(UID), Some("burstable")));
        let p = format!("/docker/{ID2}/docker/{ID}");
        assert_eq!(attribute(&p), info(Runtime::Docker, None, None));
        // the kind node itself
        let p = format!("/docker/{ID2}/system.slice/containerd.service");
        assert_eq!(attribute(&p).unwrap().id, ID2);
    }

    #[test]
    fn upper_case_ids_are_normalised() {
        let p = format!("/docker/{}", ID.to_ascii_uppercase());
        assert_eq!(attribute(&p), info(Runtime::Docker, None, None));
    }

    #[test]
    fn host_paths_are_none() {
        for p in [
            "",
            "/",
            "/user.slice/user-1000.slice/session-2.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope",
            "/system.slice/sshd.service",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/process_api/1359b2770d99e82227476ef6ac18d14b",
            "/leaktrace-test",
            "/kubepods.slice/kubepods-burstable.slice",
            "/docker/abc",
            "/docker-abc.scope",
        ] {
            assert_eq!(attribute(p), None, "{p}");
        }
        // 63 and 65 hex chars
        assert_eq!(attribute(&format!("/docker/{}", &ID[1..])), None);
        assert_eq!(attribute(&format!("/docker/{ID}0")), None);
    }

    #[test]
    fn serde_lowercase() {
        let v = serde_json::to_value(attribute(&format!("/machine.slice/libpod-{ID}.scope")).unwrap()).unwrap();
        assert_eq!(v["runtime"], "podman");
        assert_eq!(v["pod_uid"], serde_json::Value::Null);
        assert_eq!(serde_json::to_value(Runtime::Crio).unwrap(), "crio");
        assert_eq!(serde_json::to_value(Runtime::Containerd).unwrap(), "containerd");
    }

    #[test]
    fn never_panics() {
        let samples = [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
        ];
        for s in &samples {
            for (i, _) in s.char_indices() {
                let _ = attribute(&s[..i]);
                let _ = attribute(&s[i..]);
            }
        }
        for g in [
            "//////",
            "pod",
            "kubepods/pod/",
            ".slice",
            "-pod.slice",
            "\u{fffd}\0/é/ñ",
            "kubepods.slice/kubepods-pod.slice",
        ] {
            let _ = attribute(g);
        }
    }
}
