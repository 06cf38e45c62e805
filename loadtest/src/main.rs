//! `redcloud-loadtest`: the bundled load-test harness (not built yet; see issue 7).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("redcloud-loadtest: no target is implemented yet (see docs/performance.md)")
}
