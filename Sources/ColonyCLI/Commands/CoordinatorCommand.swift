import ArgumentParser
import Colony

/// `colony coordinator`: holds the queue and answers the nodes' pulls.
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run a coordinator: it queues tasks and hands them to nodes that pull."
    )

    @Option(name: .long, help: "Where to listen (tcp://HOST:PORT, ipc:///path, inproc://name).")
    var listen: String = ColonyURL.defaultCoordinator

    @Option(name: .long, help: "Requests served at once (parked long polls count).")
    var contexts: Int = 256

    func validate() throws {
        guard contexts >= 2, contexts <= 65536 else { throw ValidationError("--contexts must be 2 to 65536") }
    }

    func run() async throws {
        try ColonyURL.validate(listen)
        var configuration = Coordinator.Configuration(listenURL: listen)
        configuration.contexts = contexts
        let coordinator: Coordinator
        do {
            coordinator = try Coordinator(configuration: configuration)
        } catch {
            throw ColonyURL.describe(error, url: listen)
        }
        let shown = coordinator.boundPort.map { port in listen.replacingOccurrences(of: ":0", with: ":\(port)") } ?? listen
        printError("colony coordinator listening on \(shown)")
        try await runUntilTerminated { await coordinator.run() }
        printError("colony coordinator stopped")
    }
}
