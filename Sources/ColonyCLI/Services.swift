import ColonyCoordinator
import ColonyHTTP
import ColonyNode
import Logging
import ServiceLifecycle
import UnixSignals

// What `colony coordinator`, `colony node` and `colony up` run, as swift-service-lifecycle
// services: one ServiceGroup per process turns SIGTERM and SIGINT into a graceful shutdown of
// its services, last started first stopped.

/// Runs `services` until one ends or SIGTERM/SIGINT asks them to shut down gracefully.
func runServices(_ services: [ServiceGroupConfiguration.ServiceConfiguration], logger: Logger) async throws {
    var configuration = ServiceGroupConfiguration(services: services, logger: logger)
    configuration.gracefulShutdownSignals = [.sigterm, .sigint]
    try await ServiceGroup(configuration: configuration).run()
}

/// The coordinator (and its allocator, if any): stops accepting and returns on shutdown.
struct CoordinatorService: Service, CustomStringConvertible {
    let coordinator: Coordinator
    let allocator: SlurmAllocator?
    var description: String { "coordinator" }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                if let allocator { group.addTask { await allocator.run() } }
                await coordinator.run()
            }
        }
    }
}

/// The HTTP side (metrics, API, dashboard): serves until shutdown, then stops its server.
struct HTTPFrontendService: Service, CustomStringConvertible {
    let frontend: HTTPFrontend
    var description: String { "http" }

    func run() async throws {
        try? await gracefulShutdown()
        frontend.stop()
    }
}

/// A node: on shutdown it drains (finishes or hands back its tasks within `drainDeadline`,
/// then leaves); a second SIGTERM or SIGINT during the drain stops it at once. `signals` must
/// trap them before the group does, so that it sees the one that began the shutdown too.
struct NodeService: Service, CustomStringConvertible {
    let node: NodeAgent
    let drainDeadline: Duration
    let signals: UnixSignalsSequence
    let logger: Logger
    var description: String { "node" }

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await node.run() }
            group.addTask {
                guard (try? await gracefulShutdown()) != nil else { return }
                logger.notice("draining (a second SIGTERM or SIGINT stops at once)")
                await node.drain(deadline: drainDeadline)
                var signals = self.signals.makeAsyncIterator()
                // The signal that began the shutdown reached this sequence too.
                _ = await signals.next()
                if let signal = await signals.next() {
                    logger.notice("got \(signal) again, stopping now")
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
