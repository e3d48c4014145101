//! A thin typed layer over containerd's gRPC services: every request carries ketch's
//! namespace (and, where objects must survive containerd's garbage collector while they are
//! being assembled, a lease).

use std::collections::HashMap;
use std::path::Path;

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use containerd_client::tonic::metadata::AsciiMetadataValue;
use containerd_client::tonic::{self, Code, Request};
use containerd_client::types::Mount;

/// containerd namespace of everything ketch creates.
pub const NAMESPACE: &str = "ketch";
/// The snapshotter ketch unpacks into and runs from.
pub const SNAPSHOTTER: &str = "overlayfs";
/// The stock runc shim.
pub const RUNC_V2: &str = "io.containerd.runc.v2";
/// Type URL of an OCI runtime spec in `Container.spec`.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// A containerd call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("connecting to containerd at {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("containerd {op}: {status}")]
    Call {
        op: &'static str,
        status: Box<tonic::Status>,
    },
}

impl ContainerdError {
    pub fn code(&self) -> Option<Code> {
        match self {
            ContainerdError::Call { status, .. } => Some(status.code()),
            ContainerdError::Connect { .. } => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(Code::AlreadyExists)
    }
}

pub(crate) fn call(op: &'static str) -> impl FnOnce(tonic::Status) -> ContainerdError {
    move |status| ContainerdError::Call {
        op,
        status: Box::new(status),
    }
}

/// `Ok(None)` for NotFound.
pub(crate) fn found<T>(r: Result<T, ContainerdError>) -> Result<Option<T>, ContainerdError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A connection to containerd, scoped to [`NAMESPACE`].
#[derive(Clone)]
pub struct Containerd {
    client: std::sync::Arc<containerd_client::Client>,
    namespace: AsciiMetadataValue,
    pub socket: String,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Containerd {
    /// Connects and checks the daemon answers (its version).
    ///
    /// # Errors
    /// [`ContainerdError::Connect`] when the socket is missing or containerd does not answer.
    pub async fn connect(socket: &Path) -> Result<(Self, String), ContainerdError> {
        let socket_s = socket.display().to_string();
        let connect_err = |message: String| ContainerdError::Connect {
            socket: socket_s.clone(),
            message,
        };
        if !socket.exists() {
            return Err(connect_err("no such socket".into()));
        }
        let client = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            containerd_client::Client::from_path(socket),
        )
        .await
        .map_err(|_| connect_err("timed out".into()))?
        .map_err(|e| connect_err(e.to_string()))?;
        let cd = Containerd {
            client: std::sync::Arc::new(client),
            namespace: AsciiMetadataValue::from_static(NAMESPACE),
            socket: socket_s.clone(),
        };
        let version = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            cd.client.version().version(()),
        )
        .await
        .map_err(|_| connect_err("version call timed out".into()))?
        .map_err(|e| connect_err(e.message().to_string()))?
        .into_inner()
        .version;
        Ok((cd, version))
    }

    /// `msg` in ketch's namespace.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        r
    }

    /// `msg` in ketch's namespace, under `lease`.
    pub fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = AsciiMetadataValue::try_from(lease) {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    pub fn raw(&self) -> &containerd_client::Client {
        &self.client
    }

    /// Creates a lease (no expiry: ketch deletes it).
    pub async fn create_lease(
        &self,
        id: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        let r = self
            .client
            .leases()
            .create(self.req(api::CreateRequest {
                id: id.to_string(),
                labels,
            }))
            .await
            .map_err(call("create lease"));
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a lease; gone already is fine.
    pub async fn delete_lease(&self, id: &str) -> Result<(), ContainerdError> {
        let r = self
            .client
            .leases()
            .delete(self.req(api::DeleteRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await
            .map_err(call("delete lease"));
        found(r).map(|_| ())
    }

    pub async fn snapshot_exists(&self, key: &str) -> Result<bool, ContainerdError> {
        let r = self
            .client
            .snapshots()
            .stat(self.req(snap::StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await
            .map_err(call("stat snapshot"));
        found(r).map(|o| o.is_some())
    }

    /// Prepares an active snapshot on `parent` and returns its mounts.
    pub async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
        lease: &str,
    ) -> Result<Vec<Mount>, ContainerdError> {
        let r = self
            .client
            .snapshots()
            .prepare(self.leased(
                snap::PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.to_string(),
                    parent: parent.to_string(),
                    labels: HashMap::new(),
                },
                lease,
            ))
            .await
            .map_err(call("prepare snapshot"));
        match r {
            Ok(r) => Ok(r.into_inner().mounts),
            Err(e) if e.is_already_exists() => self.snapshot_mounts(key).await,
            Err(e) => Err(e),
        }
    }

    pub async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>, ContainerdError> {
        Ok(self
            .client
            .snapshots()
            .mounts(self.req(snap::MountsRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await
            .map_err(call("snapshot mounts"))?
            .into_inner()
            .mounts)
    }

    /// Removes a snapshot; gone already is fine.
    pub async fn remove_snapshot(&self, key: &str) -> Result<(), ContainerdError> {
        let r = self
            .client
            .snapshots()
            .remove(self.req(snap::RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await
            .map_err(call("remove snapshot"));
        found(r).map(|_| ())
    }

    /// Containers whose labels match every `key==value` pair.
    pub async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<api::Container>, ContainerdError> {
        let filter = labels
            .iter()
            .map(|(k, v)| format!("labels.{k:?}=={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        Ok(self
            .client
            .containers()
            .list(self.req(api::ListContainersRequest {
                filters: if filter.is_empty() {
                    vec![]
                } else {
                    vec![filter]
                },
            }))
            .await
            .map_err(call("list containers"))?
            .into_inner()
            .containers)
    }

    /// The task of a container: `None` when it has none.
    pub async fn task(
        &self,
        id: &str,
    ) -> Result<Option<containerd_client::types::v1::Process>, ContainerdError> {
        let r = self
            .client
            .tasks()
            .get(self.req(api::GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(call("get task"));
        Ok(found(r)?.and_then(|r| r.into_inner().process))
    }

    pub async fn kill(&self, id: &str, signal: u32) -> Result<(), ContainerdError> {
        let r = self
            .client
            .tasks()
            .kill(self.req(api::KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal,
                all: true,
            }))
            .await
            .map_err(call("kill task"));
        found(r).map(|_| ())
    }

    /// Waits for the task to exit: its exit status.
    pub async fn wait_task(&self, id: &str) -> Result<api::WaitResponse, tonic::Status> {
        self.client
            .tasks()
            .wait(self.req(api::WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn delete_task(&self, id: &str) -> Result<(), ContainerdError> {
        let r = self
            .client
            .tasks()
            .delete(self.req(api::DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
            .map_err(call("delete task"));
        found(r).map(|_| ())
    }

    /// Deletes the task, the container, its snapshot and its lease: each step tolerates
    /// "already gone". A task that cannot be deleted keeps its container (returning the
    /// error): containerd deletes a container record under a live task, which would leave
    /// its processes running where nothing lists them; kept, it is reaped again at the
    /// agent's next start.
    /// After that every step runs even if an earlier one failed (the first error is returned).
    pub async fn remove_container(&self, id: &str) -> Result<(), ContainerdError> {
        let mut first = None;
        let mut task = self.delete_task(id).await;
        // A task that is still running cannot be deleted (containerd 1.6's runc shim says so
        // with code Unknown, later ones with FailedPrecondition): SIGKILL it, wait for the
        // exit (bounded), then delete.
        if task.is_err() {
            let _ = self.kill(id, 9).await;
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(10), self.wait_task(id)).await;
            task = self.delete_task(id).await;
        }
        task?;
        let c = self
            .client
            .containers()
            .delete(self.req(api::DeleteContainerRequest { id: id.to_string() }))
            .await
            .map_err(call("delete container"));
        if let Err(e) = found(c) {
            first.get_or_insert(e);
        }
        if let Err(e) = self.remove_snapshot(id).await {
            first.get_or_insert(e);
        }
        if let Err(e) = self.delete_lease(id).await {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}
