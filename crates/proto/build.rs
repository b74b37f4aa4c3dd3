//! Compiles `proto/` with protox (pure Rust, no `protoc`) and writes the
//! encoded descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let files = ["authd/v1/authd.proto", "introspect/v1/introspect.proto"];
    let mut compiler = protox::Compiler::new([root])?;
    compiler.include_source_info(true).include_imports(true).open_files(files)?;
    let fds = compiler.file_descriptor_set();

    // compile_fds does not write file_descriptor_set_path, so encode it here;
    // protox's own encoding keeps the options' extensions (google.api.http,
    // read by authd's HTTP routes), which prost_types' structs drop.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure()
        // Map decode failures (e.g. non-UTF-8 strings) to INVALID_ARGUMENT.
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={root}/{f}");
    }
    Ok(())
}
