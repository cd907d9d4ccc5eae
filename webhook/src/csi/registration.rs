//! The kubelet's plugin registration (`pluginregistration.Registration`), served by the plugin
//! itself on `<kubelet dir>/plugins_registry/<driver>-reg.sock` instead of by a sidecar: the
//! kubelet's plugin watcher sees the socket appear, asks `GetInfo` for the driver's name and
//! CSI endpoint, calls the endpoint's `NodeGetInfo`, and reports the outcome.

use super::grpc::{Code, Status};
use super::messages::{self, RegistrationStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The CSI versions the Node service speaks, as the kubelet parses them.
const SUPPORTED_VERSIONS: [&str; 1] = ["1.0.0"];

pub struct Registration {
    pub name: String,
    /// The CSI socket's path on the host.
    pub endpoint: String,
    pub registered: Arc<AtomicBool>,
}

impl Registration {
    pub fn handle(&self, method: &str, message: &[u8]) -> Result<Vec<u8>, Status> {
        match method {
            "/pluginregistration.Registration/GetInfo" => {
                Ok(messages::registration_info(&self.name, &self.endpoint, &SUPPORTED_VERSIONS))
            }
            "/pluginregistration.Registration/NotifyRegistrationStatus" => {
                let status = RegistrationStatus::decode(message)?;
                self.registered.store(status.registered, Ordering::SeqCst);
                if status.registered {
                    tracing::info!(driver = %self.name, "the kubelet registered the driver");
                } else {
                    tracing::error!(driver = %self.name, error = %status.error, "the kubelet refused the driver's registration");
                }
                Ok(messages::empty())
            }
            other => Err(Status::new(Code::Unimplemented, format!("{other} is not a registration method"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::wire::Writer;

    #[test]
    fn get_info_names_the_driver_and_its_endpoint_and_the_status_is_kept() {
        let registration = Registration {
            name: "csi.dragonfly.io".into(),
            endpoint: "/var/lib/kubelet/plugins/csi.dragonfly.io/csi.sock".into(),
            registered: Arc::default(),
        };
        let info = registration.handle("/pluginregistration.Registration/GetInfo", &[]).unwrap();
        assert_eq!(info, messages::registration_info(&registration.name, &registration.endpoint, &["1.0.0"]));
        let ok = Writer::default().bool(1, true).finish();
        registration.handle("/pluginregistration.Registration/NotifyRegistrationStatus", &ok).unwrap();
        assert!(registration.registered.load(Ordering::SeqCst));
        let refused = Writer::default().string(2, "version").finish();
        registration.handle("/pluginregistration.Registration/NotifyRegistrationStatus", &refused).unwrap();
        assert!(!registration.registered.load(Ordering::SeqCst));
        assert_eq!(registration.handle("/x/Y", &[]).unwrap_err().code, Code::Unimplemented);
    }
}
