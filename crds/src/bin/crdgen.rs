//! Writes the CRD YAML of every sealant resource into `crds/yaml/` and the Helm chart's `crds/` copy.

fn main() -> std::io::Result<()> {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/sealant/crds");
    for dir in [sealant_crds::yaml_dir(), chart] {
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in sealant_crds::all_crds() {
            let path = dir.join(file);
            std::fs::write(&path, sealant_crds::crd_yaml(&crd))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
