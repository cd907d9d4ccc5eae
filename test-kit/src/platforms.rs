//! The five platforms, once: each one's qemu-user runner and ELF identity. The list itself is
//! `ALL_PLATFORMS` in scripts/versions.env; a test checks that this table covers exactly it.

use super::pinned_list;
use std::path::Path;
use std::process::Command;

pub struct Platform {
    pub name: &'static str,
    /// qemu-user runner, `None` when native (the machines that run the tests are amd64).
    pub runner: Option<&'static str>,
    /// ELF `e_machine`, class (2: 64-bit) and data encoding (1: little, 2: big endian).
    pub machine: u16,
    pub class: u8,
    pub endian: u8,
}

pub const PLATFORMS: [Platform; 5] = [
    Platform { name: "linux/amd64", runner: None, machine: 62, class: 2, endian: 1 },
    Platform { name: "linux/arm64", runner: Some("qemu-aarch64-static"), machine: 183, class: 2, endian: 1 },
    Platform { name: "linux/arm/v7", runner: Some("qemu-arm-static"), machine: 40, class: 1, endian: 1 },
    Platform { name: "linux/ppc64le", runner: Some("qemu-ppc64le-static"), machine: 21, class: 2, endian: 1 },
    Platform { name: "linux/s390x", runner: Some("qemu-s390x-static"), machine: 22, class: 2, endian: 2 },
];

/// Every platform the project builds for (scripts/versions.env).
pub fn all_platforms() -> Vec<String> {
    pinned_list("ALL_PLATFORMS")
}

/// The table's entry for `name` (`linux/arm/v7`); panics for a platform the project does not build.
pub fn platform(name: &str) -> &'static Platform {
    PLATFORMS.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} is not one of the five platforms"))
}

impl Platform {
    /// A command that runs `binary` of this platform here: directly, or under its qemu-user.
    pub fn command(&self, binary: &Path) -> Command {
        match self.runner {
            None => Command::new(binary),
            Some(runner) => {
                let mut command = Command::new(runner);
                command.arg(binary);
                command
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_exactly_the_pinned_platforms() {
        let names: Vec<&str> = PLATFORMS.iter().map(|p| p.name).collect();
        assert_eq!(names, all_platforms());
    }
}
