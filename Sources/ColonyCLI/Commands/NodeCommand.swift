import ArgumentParser
import Colony
import Foundation
import Synchronization

/// `colony node`: a worker that pulls tasks for its free slots.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a worker node: it pulls tasks from the coordinator when it has free slots."
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: "Thread-pool slots: handlers running at once (default: the number of cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "This node's unique name (default: HOST-PID).")
    var name: String?

    @Option(name: .long, help: "A label KEY=VALUE this node offers, e.g. gpu=1 (repeatable).")
    var label: [String] = []

    @Flag(name: .long, help: "Run `exec` tasks (shell commands, e.g. from `colony map`). Off by default: anyone who can submit could run commands as this node's user.")
    var allowExec = false

    func validate() throws {
        guard threads >= 1, threads <= 4096 else { throw ValidationError("--threads must be 1 to 4096") }
        if let name, name.isEmpty || name.utf8.count > 256 { throw ValidationError("--name must be 1 to 256 bytes") }
    }

    func run() async throws {
        let url = client.coordinatorURL
        try ColonyURL.validate(url)
        let host = ProcessInfo.processInfo.hostName
        var configuration = NodeConfiguration(
            coordinatorURL: url, name: name ?? "\(host)-\(ProcessInfo.processInfo.processIdentifier)", host: host, threads: threads)
        configuration.log = { printError($0) }
        configuration.labels = try parseLabels(label)
        let node = NodeAgent(configuration: configuration, handlers: .builtIn(plus: CustomHandlers.registered, allowExec: allowExec))
        try await runUntilTerminated { try await node.run() }
        let stats = await node.stats()
        printError("node \(configuration.name) stopped: \(stats.succeeded) tasks succeeded, \(stats.failed) failed")
    }
}

/// Handlers added by a user's own node executable (see `ColonyNodeMain`).
enum CustomHandlers {
    private static let storage = Mutex<[AnyTaskHandler]>([])
    static var registered: [AnyTaskHandler] { storage.withLock { $0 } }
    static func set(_ handlers: [AnyTaskHandler]) { storage.withLock { $0 = handlers } }
}

/// Entry point for users' own node executables: their handlers plus Colony's built-ins, with
/// exactly the flags of `colony node`.
///
/// ```swift
/// @main struct MyNode {
///     static func main() async { await ColonyNodeMain.main(handlers: [AnyTaskHandler(Square())]) }
/// }
/// ```
public enum ColonyNodeMain {
    public static func main(handlers: [AnyTaskHandler], arguments: [String]? = nil) async {
        CustomHandlers.set(handlers)
        let command: any AsyncParsableCommand.Type = NodeCommand.self
        await command.main(arguments)
    }
}
