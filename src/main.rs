fn main() -> std::process::ExitCode {
    kube_cert_agent::cli::main()
}
