//! `redcloud`: the command line.

fn main() {}
