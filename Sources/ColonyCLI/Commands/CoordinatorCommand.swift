import ArgumentParser
import Colony
import ColonyCoordinator
import ColonyCore
import ColonyModel
import ColonyHTTP
import ColonyStore
import CoreMetrics
import Foundation
import Logging
import Prometheus
import ServiceLifecycle

/// `colony coordinator`: holds the queue and answers the nodes' pulls.
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run a coordinator: it queues tasks and hands them to nodes that pull."
    )

    @Option(name: .long, help: "Where to listen (tcp://HOST:PORT, tls+tcp://, ipc:///path, or colony://HOST:PORT for Colony's own faster framing on TCP); twice to serve an nng address and a colony:// one at once.")
    var listen: [String] = []

    /// The addresses to listen on (the default when none is given); the first is the one
    /// shown and handed to allocated nodes.
    var listenURLs: [String] { listen.isEmpty ? [ColonyURL.defaultCoordinator] : listen }

    @Option(name: .long, parsing: .unconditional, help: "Contexts (requests served at once) opened at start; parked long polls hold one each, so more are opened whenever few are free, up to 65536.")
    var contexts: Int = 256

    @OptionGroup var tokenSource: TokenOptions

    @OptionGroup var tlsFiles: TLSOptions

    @OptionGroup var logging: LogOptions

    @Option(name: .long, parsing: .unconditional, help: "Seconds without a pull after which a node is dead and its tasks run elsewhere.")
    var nodeTimeout: Double = 2.5

    @Option(name: .long, parsing: .unconditional, help: "Seconds without a word from a client session (a submit, a fetch) after which its unfinished tasks are cancelled and its results dropped: a killed 'colony map' leaves nothing behind. 'colony submit' without --wait and the HTTP API submit detached work, which is exempt.")
    var sessionTimeout: Double = 600
    static let sessionTimeoutRange = SecondsRange(1...2_592_000)
    static let nodeTimeoutRange = SecondsRange(0.5...3600)

    @Option(name: .long, help: "Folder for the durable state (SQLite journal): tasks, results, counters and limits survive a restart or a crash. ':memory:' keeps nothing.")
    var state: String = "colony-state"

    @Flag(name: .long, help: "Start even though the state folder's journal lost committed history (its WAL deleted or cut short): run with what it holds. Without it such a coordinator refuses to start.")
    var acceptJournalLoss = false

    @Option(name: .long, help: "Serve HTTP on HOST:PORT: Prometheus metrics at /metrics, the JSON API under /api/v1/, the live dashboard at /. Beyond loopback it needs the token (as 'Authorization: Bearer TOKEN'). https://HOST:PORT serves HTTPS with the --tls-cert certificate.")
    var metricsListen: String?

    @OptionGroup var allocation: AllocationOptions

    func validate() throws {
        guard contexts >= 2, contexts <= 65536 else { throw CLIError("--contexts must be 2 to 65536") }
        _ = try Self.nodeTimeoutRange.check(nodeTimeout, "--node-timeout")
        _ = try Self.sessionTimeoutRange.check(sessionTimeout, "--session-timeout")
        if let metricsListen, metricsListen.hasPrefix("https://"), tlsFiles.tlsCert == nil {
            throw CLIError("--metrics-listen \(metricsListen) serves HTTPS with the coordinator's certificate: give --tls-cert FILE")
        }
    }

    func run() async throws {
        let urls = listenURLs
        guard urls.count <= 2 else { throw CLIError("--listen: at most two addresses (one nng, one colony://), got \(urls.count)") }
        for url in urls { try ColonyURL.validate(url) }
        let listen = urls[0]
        var configuration = Coordinator.Configuration(listenURL: listen)
        configuration.alsoListenURL = urls.count > 1 ? urls[1] : nil
        configuration.contexts = contexts
        configuration.coreBounds.nodeTimeoutSeconds = nodeTimeout
        configuration.coreBounds.sessionIdleSeconds = sessionTimeout
        for url in urls { configuration.token = try tokenSource.tokenForListening(on: url) }
        configuration.tls = try urls.compactMap { try tlsFiles.forListening($0) }.first
        logging.bootstrap()
        let logger = Logger(label: "colony.coordinator")
        configuration.logger = logger
        var store: Store?
        var restored: CoordinatorCore?
        if state != ":memory:" {
            do {
                let opened = try Store(directory: state, acceptingJournalLoss: acceptJournalLoss)
                store = opened
                if let loss = opened.acceptedLoss {
                    logger.warning("journal history lost and accepted (--accept-journal-loss): running with what it holds", metadata: [
                        "state": "\(state)", "last_commit_held": "\(loss.held)", "last_commit_made": "\(loss.made)",
                    ])
                }
                let (core, summary) = try JournalRecovery.restore(from: opened, bounds: configuration.coreBounds)
                restored = core
                logger.info("journal recovered", metadata: [
                    "state": "\(state)", "unfinished_tasks": "\(summary.unfinishedTasks)", "results": "\(summary.results)",
                    "counters": "\(summary.counters)", "limits": "\(summary.limits)",
                    "seconds": "\(String(format: "%.3f", summary.seconds))",
                ])
            } catch {
                store?.close()
                throw CLIError("\(error)")
            }
        }
        // Refuse an HTTP address beyond loopback without a token before starting anything.
        if let metricsListen { try requireTokenForHTTP(on: metricsListen, tokens: tokenSource) }
        // swift-metrics goes to a Prometheus registry, before any metric is made.
        let registry = metricsListen.map { _ in bootstrapPrometheusMetrics() }
        let coordinator: Coordinator
        do {
            coordinator = try Coordinator(configuration: configuration, store: store, restored: restored)
        } catch {
            store?.close()
            throw error.userError
        }
        let shown = coordinator.boundPort.map { port in listen.replacingOccurrences(of: ":0", with: ":\(port)") } ?? listen
        logger.info("colony coordinator listening on \(shown)")
        if let also = configuration.alsoListenURL {
            let port = also.hasPrefix(FramedAddress.scheme) ? coordinator.framedBoundPort : nil
            logger.info("colony coordinator listening on \(port.map { also.replacingOccurrences(of: ":0", with: ":\($0)") } ?? also)")
        }
        var frontend: HTTPFrontend?
        if let metricsListen, let registry {
            let started = try startHTTPFrontend(metricsListen, coordinator: coordinator, registry: registry,
                                                certificate: tlsFiles.tlsCert)
            frontend = started.frontend
            logger.info("serving metrics, API and dashboard on \(started.url)")
        }
        let allocator = allocation.allocator(listen: shown, tokenFile: tokenSource.tokenFile,
                                             requests: coordinator.requests, logger: logger)
        var services = [ServiceGroupConfiguration.ServiceConfiguration(service: CoordinatorService(coordinator: coordinator, allocator: allocator))]
        if let frontend { services.append(.init(service: HTTPFrontendService(frontend: frontend))) }
        try await runServices(services, logger: logger)
        logger.info("colony coordinator stopped")
    }
}

/// Sends the process's swift-metrics to a new Prometheus registry (call once, before any
/// metric is made) and returns the registry for `/metrics`.
func bootstrapPrometheusMetrics() -> PrometheusCollectorRegistry {
    let registry = PrometheusCollectorRegistry()
    // Task latencies span microseconds (queue waits) to minutes (run times).
    let microseconds: [Int64] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
                                 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000, 300_000_000]
    MetricsSystem.bootstrap(DescribedPrometheusMetrics(
        registry: registry, durationBuckets: microseconds.map { Duration.microseconds($0) },
        valueBuckets: PrometheusMetricsFactory(registry: registry).defaultValueHistogramBuckets,
        help: { CoordinatorMetric(rawValue: $0)?.help ?? SlurmAllocator.Metric(rawValue: $0)?.help ?? "" }))
    return registry
}

/// Throws when the HTTP side would listen beyond loopback and no token is configured (the
/// HTTP side then checks the coordinator's own token).
func requireTokenForHTTP(on listen: String, tokens: TokenOptions) throws {
    _ = try tokens.tokenForListening(on: listen.contains("://") ? listen : "http://\(listen)")
}

/// Starts the HTTP side (`--metrics-listen HOST:PORT`) of `coordinator` (it requires the
/// coordinator's token, when it has one).
/// Returns it and the URL it serves (with the port bound, for port 0).
func startHTTPFrontend(_ listen: String, coordinator: Coordinator,
                       registry: PrometheusCollectorRegistry, certificate: String? = nil) throws -> (frontend: HTTPFrontend, url: String) {
    let secure = listen.hasPrefix("https://")
    let host = listen.replacingOccurrences(of: "https://", with: "").replacingOccurrences(of: "http://", with: "")
    var http = HTTPFrontend.Configuration(listen: host)
    if secure {
        guard let certificate else {
            throw CLIError("--metrics-listen \(listen) serves HTTPS with the coordinator's certificate: give --tls-cert FILE")
        }
        http.tls = TLSSettings(certificateAndKeyFile: certificate)
    }
    let frontend: HTTPFrontend
    do {
        frontend = try HTTPFrontend(configuration: http, requests: coordinator.requests, registry: registry)
        try frontend.start()
    } catch {
        throw CLIError("cannot serve HTTP on \(listen): \(error.reason)")
    }
    let port = frontend.boundPort.map(String.init) ?? "?"
    let shown = host.hasSuffix(":0") ? String(host.dropLast(1)) + port : host
    return (frontend, (secure ? "https://" : "http://") + "\(shown)/")
}
