import ArgumentParser
import Colony
import ColonyModel
import ColonyNode
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import Synchronization

/// `colony node`: a worker that pulls tasks for its free slots.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a worker node: it pulls tasks from the coordinator when it has free slots."
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, parsing: .unconditional, help: "Thread-pool slots: handlers running at once (default: the number of cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, parsing: .unconditional, help: "Io-pool slots: handlers that mostly wait (fetch, sleep, and handlers declaring the io pool) running at once without holding a thread (0: none; they then use --threads).")
    var ioSlots: Int = 1024

    @Option(name: .long, help: "This node's unique name (default: HOST-PID).")
    var name: String?

    @Option(name: .long, help: "A label KEY=VALUE this node offers, e.g. gpu=1 (repeatable).")
    var label: [String] = []

    @Option(name: .long, help: "A resource this node offers beyond its slots: NAME=COUNT (licenses=4, mem=64G), NAME=ID,ID,... (gpus=0,1; one id: gpus=3,), or gpus=auto (the GPUs nvidia-smi -L lists) (repeatable).")
    var resource: [String] = []

    @Flag(name: .long, help: "Run `exec` tasks (shell commands, e.g. from `colony map`). Off by default: anyone who can submit could run commands as this node's user.")
    var allowExec = false

    @OptionGroup var processPool: ProcessPoolFlags

    @OptionGroup var logging: LogOptions

    @Option(name: .long, parsing: .unconditional, help: "On SIGTERM/SIGINT the node drains: seconds its running tasks may take before they are handed back to other nodes (a second signal stops it at once).")
    var drainTimeout: Double = 30

    func validate() throws {
        guard threads >= 0, threads <= 4096 else { throw CLIError("--threads must be 0 to 4096") }
        guard ioSlots >= 0, ioSlots <= 65_536 else { throw CLIError("--io-slots must be 0 to 65536") }
        guard threads + processPool.processes + ioSlots > 0 else { throw CLIError("a node needs --threads, --processes or --io-slots above 0") }
        _ = try SecondsRange.drainDeadline.check(drainTimeout, "--drain-timeout")
        try processPool.validate()
        if let name, name.isEmpty || name.utf8.count > 256 { throw CLIError("--name must be 1 to 256 bytes") }
        // The coordinator would refuse every pull of such a node: say so once, here.
        for (flag, text) in [("--name", name ?? "")] + label.map({ ("--label", $0) }) where NameCheck.containsControlCharacter(text) {
            throw CLIError("\(flag) '\(NameCheck.escaped(text))' contains a control character")
        }
    }

    func run() async throws {
        let url = client.coordinatorURL
        try ColonyURL.validate(url)
        let host = ProcessInfo.processInfo.hostName
        var configuration = NodeConfiguration(
            coordinatorURL: url, name: name ?? "\(host)-\(ProcessInfo.processInfo.processIdentifier)", host: host, threads: threads)
        logging.bootstrap()
        let logger = Logger(label: "colony.node")
        configuration.log = { logger.info("\($0)") }
        configuration.labels = try parseLabels(label)
        configuration.resources = try NodeResourceOption.parse(resource)
        configuration.token = try client.token()
        configuration.tls = try client.tls()
        configuration.processes = processPool.configuration
        configuration.ioSlots = ioSlots
        // Commands the node runs (exec) reach its coordinator with `colony` as they are.
        setenv("COLONY_COORDINATOR", url, 1)
        let openFiles = OpenFileLimit.raiseToHard()
        if ioSlots + OpenFileLimit.reserved > openFiles {
            logger.warning("--io-slots \(ioSlots) is more than the open files allow (the limit is \(openFiles): ulimit -n): at most \(OpenFileLimit.fetchConnections(under: openFiles)) fetches connect at once, the others wait for a file")
        }
        let node = NodeAgent(configuration: configuration, handlers: .builtIn(plus: CustomHandlers.registered, allowExec: allowExec))
        let drainTimeout = try SecondsRange.drainDeadline.duration(self.drainTimeout, "--drain-timeout")
        // First signal: drain (finish or hand back, then leave, exit 0). Second: stop now.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        // A node that leaves by itself (a `colony drain`) ends the process like a signal does.
        let service = NodeService(node: node, drainDeadline: drainTimeout, signals: signals, logger: logger)
        try await runServices([.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)], logger: logger)
        let stats = await node.stats()
        logger.info("node \(configuration.name) stopped", metadata: ["succeeded": "\(stats.succeeded)", "failed": "\(stats.failed)"])
    }
}

/// The process-pool flags of `colony node` (and `colony up`).
struct ProcessPoolFlags: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: "Process-pool slots: long-lived child processes, one task each at a time, for tasks that may crash, leak or need killing (default: the number of cores; 0: none).")
    var processes: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "Address-space limit of each child in bytes (suffixes K, M, G); a task that exceeds it fails, the child is replaced.")
    var childMemoryLimit: String?

    @Option(name: .long, parsing: .unconditional, help: "Replace a child after this many tasks (against slow leaks).")
    var maxTasksPerChild: Int?

    @Option(name: .long, parsing: .unconditional, help: "Seconds a new child may take to start before it is killed and reported.")
    var childStartTimeout: Double = 10
    static let childStartTimeoutRange = SecondsRange(0.001...86_400)

    func validate() throws {
        guard processes >= 0, processes <= 1024 else { throw CLIError("--processes must be 0 to 1024") }
        if let maxTasksPerChild, maxTasksPerChild < 1 { throw CLIError("--max-tasks-per-child must be at least 1") }
        _ = try Self.childStartTimeoutRange.check(childStartTimeout, "--child-start-timeout")
        _ = try memoryLimitBytes()
    }

    func memoryLimitBytes() throws -> Int? {
        guard let text = childMemoryLimit else { return nil }
        let bytes = try PipeChunks.parseBytes(text, option: "--child-memory-limit")
        guard bytes >= 64 << 20 else {
            throw CLIError("--child-memory-limit must be at least 64M: a child needs that much address space to start")
        }
        return bytes
    }

    var configuration: ProcessPoolConfiguration {
        var pool = ProcessPoolConfiguration(size: processes)
        pool.memoryLimitBytes = try? memoryLimitBytes()
        pool.maxTasksPerChild = maxTasksPerChild
        // Checked in `validate`.
        pool.startTimeout = (try? Self.childStartTimeoutRange.duration(childStartTimeout, "--child-start-timeout")) ?? pool.startTimeout
        return pool
    }
}

/// Turns this process into a process-pool child if its node started it as one (the first
/// thing `colony` and `ColonyNodeMain` do); returns otherwise.
public func runProcessPoolChildIfRequested(handlers: [AnyTaskHandler] = []) async {
    guard ProcessPoolChild.isRequested else { return }
    await ProcessPoolChild.run(handlers: .builtIn(plus: handlers, allowExec: ProcessPoolChild.allowsExec))
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
        await runProcessPoolChildIfRequested(handlers: handlers)
        CustomHandlers.set(handlers)
        let command: any AsyncParsableCommand.Type = NodeCommand.self
        await command.main(arguments)
    }
}
