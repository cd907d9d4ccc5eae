//! The plugin's mounts, made in and read from the kernel: a read-only bind mount of a host
//! directory at a pod's target path, its removal, and whether a path is a mount point. The
//! mount table (`/proc/self/mountinfo`) is the plugin's only state, so a restarted plugin
//! answers a repeated publish or an unpublish of a mount its predecessor made exactly as the
//! predecessor would have.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
}

/// mountinfo escapes space, tab, newline and backslash in paths as three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points listed in a mountinfo text (its fifth field), in order.
pub fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(unescape).collect()
}

/// How many mounts are stacked at `path` in this process's mount namespace.
pub fn mounts_at(path: &Path) -> io::Result<usize> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let wanted = path.to_string_lossy();
    Ok(mount_points(&table).iter().filter(|point| **point == wanted).count())
}

fn mount(source: Option<&CString>, target: &CString, flags: libc::c_ulong) -> io::Result<()> {
    let source = source.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null where
    // mount(2) allows it (no source for a remount, no filesystem type or data for a bind).
    let rc = unsafe { libc::mount(source, target.as_ptr(), std::ptr::null(), flags, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds `source` at `target`, then makes that mount read-only, without set-uid programs or
/// device files. A bind takes its source's flags, and only a remount of the bind changes them.
pub fn bind_read_only(source: &Path, target: &Path) -> io::Result<()> {
    let (source, target_c) = (c_path(source)?, c_path(target)?);
    mount(Some(&source), &target_c, libc::MS_BIND)?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    if let Err(error) = mount(None, &target_c, flags) {
        // Never leave a writable bind behind.
        let _ = unmount(target);
        return Err(error);
    }
    Ok(())
}

/// Removes the topmost mount at `target`; a path that is not a mount point, or is gone, is not
/// an error.
pub fn unmount(target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_the_fifth_field_unescaped() {
        let table = "22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw\n\
                     31 22 0:27 /a /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/my\\040vol/mount ro,nosuid - tmpfs tmpfs rw\n\
                     32 22 0:28 / /back\\134slash rw - tmpfs t rw\n";
        assert_eq!(
            mount_points(table),
            vec!["/", "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/my vol/mount", "/back\\slash"]
        );
        assert_eq!(unescape("a\\01"), "a\\01", "a short escape stays as it is");
    }

    #[test]
    fn this_process_sees_its_root_mounted() {
        assert!(mounts_at(Path::new("/")).unwrap() >= 1);
        assert_eq!(mounts_at(Path::new("/no/such/mount/point")).unwrap(), 0);
    }

    /// Needs root, as the whole suite does (scripts/test.sh): a real mount in a temporary
    /// directory, gone before the test ends.
    #[test]
    fn a_read_only_bind_shows_the_source_refuses_writes_and_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (dir.path().join("source"), dir.path().join("target with space"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(source.join("dfdaemon.sock"), b"x").unwrap();
        bind_read_only(&source, &target).expect("mounting needs root");
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = unmount(self.0);
            }
        }
        let guard = Unmount(&target);
        assert_eq!(mounts_at(&target).unwrap(), 1);
        assert_eq!(std::fs::read(target.join("dfdaemon.sock")).unwrap(), b"x");
        let refused = std::fs::write(target.join("new"), b"y").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EROFS));
        // The source stays writable, and what it gains shows through: a restarted dfdaemon's
        // new socket reaches pods.
        std::fs::write(source.join("later"), b"z").unwrap();
        assert!(target.join("later").exists());
        drop(guard);
        assert_eq!(mounts_at(&target).unwrap(), 0);
        unmount(&target).unwrap();
    }

    #[test]
    fn unmounting_what_is_not_mounted_succeeds() {
        let dir = std::env::temp_dir();
        unmount(&dir.join("dfi-never-mounted-here")).unwrap();
    }
}
