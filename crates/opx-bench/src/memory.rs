//! Resident memory of this process, from `/proc/self/status` (Linux only; `None`
//! elsewhere).

/// A `kB` field of `/proc/self/status`.
#[allow(
    clippy::disallowed_methods,
    reason = "measuring the process is the point; nothing here reaches the domain"
)]
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The peak resident set size so far (`VmHWM`), in KiB.
pub fn peak_resident_kib() -> Option<u64> {
    status_kib("VmHWM")
}

/// The current resident set size (`VmRSS`), in KiB.
pub fn resident_kib() -> Option<u64> {
    status_kib("VmRSS")
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_at_least_current_on_linux() {
        if let (Some(peak), Some(now)) = (super::peak_resident_kib(), super::resident_kib()) {
            assert!(peak >= now && now > 0);
        }
    }
}
