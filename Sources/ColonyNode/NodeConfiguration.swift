import ColonyModel
import Foundation
import NNG

/// How a node reaches its coordinator and what it offers.
public struct NodeConfiguration: Sendable {
    /// The coordinator's URL, e.g. `tcp://10.0.0.1:7411`.
    public var coordinatorURL: String
    /// Unique name of this node in the cluster.
    public var name: String
    /// The host it runs on (informational).
    public var host: String
    /// Slots of the thread pool: handlers running at once.
    public var threads: Int
    /// The process pool (size 0: none).
    public var processes = ProcessPoolConfiguration(size: 0)
    /// Slots of the io pool: handlers that mostly wait (`fetch`, `sleep`) run at once on
    /// Swift's cooperative pool, holding no thread while they wait (0: none; their tasks then
    /// run on the thread pool).
    public var ioSlots = 0
    /// How long the coordinator may hold an idle pull (the heartbeat period when idle).
    public var longPollMilliseconds: UInt32 = 1000
    /// A pull unanswered for this long (coordinator gone or restarting) is given up and
    /// retried with the same results.
    public var requestTimeout: Duration = .seconds(15)
    /// Pause after a failed pull before the next one.
    public var retryBackoff = Backoff(baseSeconds: 0.05, maxSeconds: 0.25, jitter: 0.2)
    /// After the drain deadline, how long the node keeps trying to hand back what it stopped
    /// and its results before it gives up and `run` throws `DrainIncomplete` (a coordinator
    /// that is down must not keep a stopping node alive until a supervisor's SIGKILL).
    public var drainHandBack: Duration = .seconds(2)
    /// Most results carried by one pull, and their largest total size.
    public var resultsPerPullMax = 4096
    public var resultBytesPerPullMax = 8 << 20
    /// While the node is busy (tasks wait in its local queue), results are held up to this
    /// long so that several travel in one pull; an idle node sends them at once.
    public var resultLinger: Duration = .milliseconds(2)
    /// Most tasks queued on the node beyond its free slots (0: never prefetch).
    public var prefetchMax = 1024
    /// Work per slot worth queueing ahead when tasks are short (microseconds).
    public var prefetchTargetMicros = 5000.0
    /// A task queued on the node (prefetched) that has not started after this long is handed
    /// back with everything queued behind it, so that an idle node elsewhere runs it: prefetch
    /// guessed from short tasks must not strand long ones (see docs/ARCHITECTURE.md). The
    /// node uses less when its tasks are short: twice the wait its prefetch expects (its
    /// `prefetchTargetMicros` plus one average task), at least 10 ms.
    public var strandedAfter: Duration = .milliseconds(50)
    /// Largest output a handler may return; a larger one fails its task with a clear reason.
    public var outputBytesMax = 4 << 20
    /// Labels this node offers (`gpu=1`); tasks may require them.
    public var labels: [String: String] = [:]
    /// Named resources this node offers beyond its slots (`gpus=0,1`, `mem=64G`).
    public var resources: [String: ResourceOffer] = [:]
    /// The coordinator's shared token ("" when it requires none).
    public var token = ""
    /// Certificates for a `tls+tcp://` coordinator URL.
    public var tls: TLSSettings?
    /// Where the node reports noteworthy events (one line each).
    public var log: @Sendable (String) -> Void = { _ in }

    public init(coordinatorURL: String, name: String, host: String = ProcessInfo.processInfo.hostName, threads: Int) {
        self.coordinatorURL = coordinatorURL
        self.name = name
        self.host = host
        self.threads = threads
    }
}
