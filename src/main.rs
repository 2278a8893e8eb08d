//! The `tflquant` command: parse arguments, run one subcommand, print errors cause by
//! cause, exit with a documented code (0 ok, 1 failure while working, 2 invalid input
//! or usage).

mod cli;

fn main() {
    std::process::exit(cli::main());
}
