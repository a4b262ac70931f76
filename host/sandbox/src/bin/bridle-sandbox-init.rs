//! The in-sandbox init of the local driver; see `bridle_sandbox::init`.
fn main() {
    std::process::exit(bridle_sandbox::init::main());
}
