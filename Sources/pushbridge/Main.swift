import ArgumentParser

/// `pushbridge`: the daemon and its command-line tools in one binary.
@main
struct PushBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pushbridge",
        abstract: "Push generated code to Bitbucket as pull requests.",
        subcommands: [
            Serve.self, Migrate.self, RotateKey.self, Doctor.self, OAuth1Keygen.self, Connections.self, Jobs.self,
            Enqueue.self, PrintOpenAPI.self, Demo.self,
        ])
}

/// `--env-file`, shared by every command that reads configuration.
struct EnvFileOption: ParsableArguments {
    @Option(name: .long, help: "Env file with PUSHBRIDGE_* settings (default /etc/pushbridge/pushbridge.env; may be absent).")
    var envFile: String?
}
