import ArgumentParser

@main struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pushbridge",
        subcommands: [
            Demo.self,
        ])
}
