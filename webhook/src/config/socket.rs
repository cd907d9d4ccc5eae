//! Where the dfdaemon socket appears in pods, decided from `socket.path` alone: the engine
//! mounts what this says, and the config check refuses a tools directory that would overlap it.

/// Host directories that are shared by much more than dfdaemon: a socket directly inside one of
/// them is mounted as a file, never the whole directory.
const SHARED_SYSTEM_DIRS: [&str; 5] = ["/", "/run", "/var/run", "/tmp", "/var"];

/// Where dfget looks for dfdaemon when not told (`--endpoint`; it reads no environment variable
/// for it). Inside the pod the socket is always there, wherever the host keeps it.
pub const DFGET_SOCKET: &str = "/var/run/dragonfly/dfdaemon.sock";
const DFGET_SOCKET_DIR: &str = "/var/run/dragonfly";
const DFGET_SOCKET_FILE: &str = "dfdaemon.sock";

/// How the dfdaemon socket reaches the containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketMount {
    pub host_path: String,
    /// `DirectoryOrCreate` for the socket's directory; `Socket` for the file alone.
    pub host_path_type: &'static str,
    /// Where the containers see it: dfget's default directory, or its default socket path.
    pub mount_path: &'static str,
    /// The socket file alone is mounted: a dfdaemon restart leaves pods with a dead socket.
    pub file_only: bool,
}

impl SocketMount {
    /// The socket's own directory is mounted at dfget's default directory when that shows the
    /// socket at dfget's default path; otherwise (a shared system directory, or a socket of
    /// another name) the file alone is mounted at dfget's default path.
    pub fn for_socket(path: &str) -> Self {
        let (parent, file) = match path.rsplit_once('/') {
            Some(("", file)) => ("/", file),
            Some((parent, file)) => (parent, file),
            None => ("/", path),
        };
        if SHARED_SYSTEM_DIRS.contains(&parent) || file != DFGET_SOCKET_FILE {
            SocketMount {
                host_path: path.to_owned(),
                host_path_type: "Socket",
                mount_path: DFGET_SOCKET,
                file_only: true,
            }
        } else {
            SocketMount {
                host_path: parent.to_owned(),
                host_path_type: "DirectoryOrCreate",
                mount_path: DFGET_SOCKET_DIR,
                file_only: false,
            }
        }
    }
}
