//! `erlmcp-standin`: the stand-in for erlmcp in the demo and the tests (see `dr_tests::standin`).

fn main() -> std::process::ExitCode {
    dr_tests::standin::main()
}
