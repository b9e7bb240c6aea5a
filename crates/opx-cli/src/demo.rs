pub async fn run(_g: &crate::GlobalArgs, _k: Option<std::path::PathBuf>) -> anyhow::Result<u8> { Ok(0) }
