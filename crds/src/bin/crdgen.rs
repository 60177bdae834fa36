//! Writes the CRD YAML of every sealant resource into `crds/yaml/`.

fn main() -> std::io::Result<()> {
    let dir = sealant_crds::yaml_dir();
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in sealant_crds::all_crds() {
        let path = dir.join(file);
        std::fs::write(&path, sealant_crds::crd_yaml(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
