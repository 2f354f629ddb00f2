import ArgumentParser
import Colony
import ColonyCoordinator
import ColonyModel
import ColonyHTTP
import ColonyNode
import Foundation
import Logging
import ServiceLifecycle

/// `colony up`: a coordinator and a local node in one process, running the demo workload.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a coordinator and a local node in this process and run the demo (count primes).",
        discussion: """
            The demo counts the primes below --limit by trial division, split into --tasks ranges
            that the local node runs on its thread pool; then it runs a task that crashes its
            process (`crash`) in the node's process pool and shows that the node carries on.
            With --keep-running the cluster stays up afterwards, so other nodes can join and
            `colony submit` can use it.
            """
    )

    @Option(name: .long, help: "Where the coordinator listens (default tcp://127.0.0.1:7411; a free port if that is taken).")
    var listen: String?

    @Option(name: .long, parsing: .unconditional, help: "Thread-pool slots of the local node (default: the number of cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @OptionGroup var processPool: ProcessPoolFlags

    @OptionGroup var tokenSource: TokenOptions

    @Option(name: .long, parsing: .unconditional, help: "Count the primes below this number.")
    var limit: Int = 2_000_000

    @Option(name: .long, parsing: .unconditional, help: "Split the demo into this many tasks.")
    var tasks: Int = 64

    @Flag(name: .long, help: "Keep the coordinator and node running after the demo (until Ctrl-C).")
    var keepRunning = false

    @Option(name: .long, help: "Also serve metrics, the JSON API and the live dashboard on HOST:PORT (e.g. 127.0.0.1:9464; see colony coordinator).")
    var metricsListen: String?

    func validate() throws {
        guard threads >= 1, threads <= 4096 else { throw CLIError("--threads must be 1 to 4096") }
        try processPool.validate()
        guard limit >= 0 else { throw CLIError("--limit must be >= 0") }
        guard tasks >= 1, tasks <= 1_000_000 else { throw CLIError("--tasks must be 1 to 1000000") }
    }

    func run() async throws {
        let token = try tokenSource.tokenForListening(on: listen ?? ColonyURL.defaultCoordinator)
        if let metricsListen { try requireTokenForHTTP(on: metricsListen, tokens: tokenSource) }
        let registry = metricsListen.map { _ in bootstrapPrometheusMetrics() }
        let coordinator = try startCoordinator(token: token)
        var frontend: HTTPFrontend?
        if let metricsListen, let registry {
            let started = try startHTTPFrontend(metricsListen, coordinator: coordinator, registry: registry)
            frontend = started.frontend
            printError("colony up: dashboard, metrics and API on \(started.url)")
        }
        let url = coordinator.configuration.listenURL.replacingOccurrences(of: ":0", with: ":\(coordinator.boundPort ?? 0)")
        printError("colony up: coordinator on \(url), local node with \(threads) thread slots and \(processPool.processes) process slots")
        var nodeConfiguration = NodeConfiguration(coordinatorURL: url, name: "local", threads: threads)
        nodeConfiguration.log = { printError($0) }
        nodeConfiguration.processes = processPool.configuration
        nodeConfiguration.token = token ?? ""
        let node = NodeAgent(configuration: nodeConfiguration)
        let keepRunning = self.keepRunning
        let limit = self.limit
        let taskCount = self.tasks

        // Stopped in reverse: the demo, then the node (before the coordinator, so that it never
        // sees its coordinator vanish), then the HTTP side and the coordinator.
        var services = [ServiceGroupConfiguration.ServiceConfiguration(service: CoordinatorService(coordinator: coordinator, allocator: nil))]
        if let frontend { services.append(.init(service: HTTPFrontendService(frontend: frontend))) }
        services.append(.init(service: ClosureService { try await cancelWhenGracefulShutdown { try await node.run() } }))
        let demo = ClosureService {
            try await runDemo(url: url, token: token ?? "", limit: limit, taskCount: taskCount)
            if keepRunning {
                printError("colony up: running; try COLONY_COORDINATOR=\(url) colony status (Ctrl-C stops)")
                try? await gracefulShutdown()
            }
        }
        services.append(.init(service: demo, successTerminationBehavior: .gracefullyShutdownGroup))
        try await runServices(services, logger: Logger(label: "colony.up"))
    }

    private func startCoordinator(token: String?) throws -> Coordinator {
        let requested = listen ?? ColonyURL.defaultCoordinator
        try ColonyURL.validate(requested)
        var configuration = Coordinator.Configuration(listenURL: requested)
        configuration.token = token
        // No coordinator log here: the demo narrates on standard error itself.
        do {
            return try Coordinator(configuration: configuration)
        } catch where listen == nil && error.isAddressInUse {
            printError("colony up: \(requested) is taken; using a free port instead")
            configuration.listenURL = "tcp://127.0.0.1:0"
            do {
                return try Coordinator(configuration: configuration)
            } catch {
                throw error.userError
            }
        } catch {
            throw error.userError
        }
    }

    private func runDemo(url: String, token: String, limit: Int, taskCount: Int) async throws {
        var options = ColonyClient.Options()
        options.token = token
        let colony = try ColonyClient(connect: url, options: options)
        let clock = ContinuousClock()
        let started = clock.now
        let step = max(1, (limit + taskCount - 1) / taskCount)
        let ranges = stride(from: 0, to: max(limit, 1), by: step).map { PrimesHandler.Range(lo: $0, hi: min($0 + step, limit)) }
        printError("demo: counting primes below \(limit) in \(ranges.count) tasks")
        var submissions: [TaskSubmission] = []
        for range in ranges {
            submissions.append(TaskSubmission(handler: PrimesHandler.name, input: Array(try JSONEncoder().encode(range))))
        }
        let ids = try await colony.submit(submissions)
        var total = 0
        var nodes: [String: Int] = [:]
        let progress = Progress(total: ids.count)
        for id in ids {
            let result = try await colony.result(of: id)
            total += try result.value(as: Int.self)
            nodes[result.node, default: 0] += 1
            progress.advance()
        }
        progress.finish()
        let elapsed = clock.now - started
        let seconds = elapsed.inSeconds
        print("primes below \(limit): \(total)")
        print(String(format: "%d tasks in %.2f s on %@", ids.count, seconds,
                     nodes.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value) tasks)" }.joined(separator: ", ")))
        if processPool.processes > 0 { try await crashDemo(colony) }
        await colony.close()
    }

    /// A task that kills its process, run in the process pool: it fails with the crash
    /// reason, and the next tasks run on the same node as if nothing happened.
    private func crashDemo(_ colony: ColonyClient) async throws {
        printError("demo: a task that calls fatalError, in the process pool (its child dies, the node does not)")
        let crashed = try await colony.result(of: colony.submit(CrashHandler.name, input: "the demo's deliberate crash"))
        let after = try await colony.mapResults(PrimesHandler.name, (0..<8).map { PrimesHandler.Range(lo: $0 * 1000, hi: ($0 + 1) * 1000) },
                                                options: TaskOptions(pool: .process))
        let counted = try after.reduce(0) { $0 + (try $1.value(as: Int.self)) }
        print("crash isolated: \(crashed.succeeded ? "the crash task did not crash" : crashed.error)")
        print("after the crash: \(after.filter(\.succeeded).count)/\(after.count) process-pool tasks succeeded (primes below 8000: \(counted))")
    }
}
