//! Writes a [`Plan`] as JSON Patch operations, recorded against the pod's raw JSON in the order
//! that keeps every array index right: volumes, our init container, pull secrets, the target
//! containers, the record.

use super::container;
use super::patch::{PatchBuilder, PatchError};
use super::plan::Plan;

pub fn emit(plan: Plan, builder: &mut PatchBuilder) -> Result<(), PatchError> {
    let Plan { tools_volume, socket_volume, init_container, pull_secrets, containers, annotation, status: _ } = plan;
    for volume in [tools_volume, socket_volume].into_iter().flatten() {
        builder.push("/spec/volumes", volume)?;
    }
    if let Some(init) = init_container {
        builder.insert("/spec/initContainers", 0, init)?;
    }
    for secret in pull_secrets {
        builder.push("/spec/imagePullSecrets", secret)?;
    }
    for (base, edits) in containers {
        container::apply(builder, &base, edits)?;
    }
    if let Some((path, value)) = annotation {
        builder.ensure_object("/metadata")?;
        builder.ensure_object("/metadata/annotations")?;
        builder.add(path, value)?;
    }
    Ok(())
}
