//! `ketch completion SHELL`: a shell completion script on stdout.

use clap::Args;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Prints the script completing `cli` (the whole command line of `ketch`).
pub fn run(args: CompletionArgs, mut cli: clap::Command) {
    clap_complete::generate(args.shell, &mut cli, "ketch", &mut std::io::stdout());
}
