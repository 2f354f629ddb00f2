import ColonyCore
import ColonyModel
import ColonyWire
import CoreMetrics
import Foundation
import Logging

/// When to ask Slurm for another node and when to let an allocated node go: the rules of
/// `colony coordinator --allocate slurm`, apart from the commands that carry them out.
///
/// A node job is submitted while tasks are queued, a pool has no free slot on any node, no earlier
/// allocation is still waiting to join, and fewer than `jobsMax` allocations exist. An
/// allocated node that has had nothing to run while nothing was queued for
/// `idleSecondsBeforeDrain` is drained: it leaves, its process exits and its job ends.
public struct AllocationPolicy: Sendable, Equatable {
    /// Most node jobs at once (submitted and not yet ended).
    public var jobsMax: Int
    public var idleSecondsBeforeDrain: Double

    public init(jobsMax: Int, idleSecondsBeforeDrain: Double) {
        self.jobsMax = jobsMax
        self.idleSecondsBeforeDrain = idleSecondsBeforeDrain
    }

    /// One node job: requested until its node joins, running while the node is there.
    public struct Allocation: Sendable, Equatable {
        public var jobID: String
        /// Its node has been seen in the cluster (a joined node that is gone is ending).
        public var joined = false
        /// Since when (policy clock, seconds) its node has been idle with nothing queued.
        public var idleSinceSeconds: Double?
        public var drainRequested = false

        public init(jobID: String) { self.jobID = jobID }

        /// The name the job's node runs under.
        public var nodeName: String { AllocationPolicy.nodeName(jobID: jobID) }
    }

    public struct Decision: Sendable, Equatable {
        public var submit = false
        /// Nodes to drain now.
        public var drain: [String] = []
    }

    public static func nodeName(jobID: String) -> String { "slurm-\(jobID)" }

    /// Whether queued work may be waiting for a slot: no node is up, or a pool that the nodes
    /// have (thread, process or io) has no free slot on any of them. Nodes take tasks for a
    /// pool with a free slot at once, so tasks stay queued only for a full pool (the report
    /// does not say which pool each queued task needs).
    static func aPoolIsFull(_ nodes: [ClusterReport.Node]) -> Bool {
        let serving = nodes.filter { !$0.draining }
        guard !serving.isEmpty else { return true }
        let pools: [(slots: (ClusterReport.Node) -> Int, busy: (ClusterReport.Node) -> Int)] = [
            ({ $0.threads }, { $0.busyThreads }), ({ $0.processes }, { $0.busyProcesses }), ({ $0.ioSlots }, { $0.busyIO }),
        ]
        return pools.contains { pool in
            let slots = serving.reduce(0) { $0 + pool.slots($1) }
            let free = serving.reduce(0) { $0 + max(0, pool.slots($1) - pool.busy($1)) }
            return slots > 0 && free == 0
        }
    }

    /// Allocations waiting for their node.
    public static func requested(_ allocations: [Allocation]) -> Int { allocations.count { !$0.joined } }
    /// Allocations whose node has joined and not left.
    public static func running(_ allocations: [Allocation], report: ClusterReport) -> Int {
        let names = Set(report.nodes.map(\.name))
        return allocations.count { $0.joined && names.contains($0.nodeName) }
    }

    /// Updates `allocations` (joined, idle clocks, drains asked for) and says what to do.
    public func decide(report: ClusterReport, allocations: inout [Allocation], nowSeconds: Double) -> Decision {
        let nodes = Dictionary(report.nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var decision = Decision()
        for index in allocations.indices {
            guard let node = nodes[allocations[index].nodeName] else {
                allocations[index].idleSinceSeconds = nil
                continue
            }
            allocations[index].joined = true
            guard !node.draining, !allocations[index].drainRequested else { continue }
            guard node.running == 0, report.queued == 0 else {
                allocations[index].idleSinceSeconds = nil
                continue
            }
            let since = allocations[index].idleSinceSeconds ?? nowSeconds
            allocations[index].idleSinceSeconds = since
            if nowSeconds - since >= idleSecondsBeforeDrain {
                allocations[index].drainRequested = true
                decision.drain.append(node.name)
            }
        }
        decision.submit = report.queued > 0 && Self.aPoolIsFull(report.nodes) && Self.requested(allocations) == 0
            && allocations.count < jobsMax
        return decision
    }
}

/// `colony coordinator --allocate slurm`: submits node jobs with `sbatch` as `AllocationPolicy`
/// says, drains idle allocated nodes, forgets jobs `squeue` no longer lists, and `scancel`s
/// the jobs still there when it stops (with the coordinator), so none outlive it.
public actor SlurmAllocator {
    public struct Configuration: Sendable {
        public var policy: AllocationPolicy
        /// Extra `sbatch` arguments (partition, time, CPUs...), one per element.
        public var sbatchArguments: [String]
        /// The node's command line inside the job (`colony node --coordinator URL ...`); the
        /// job gives it `--name slurm-JOBID`.
        public var nodeCommand: [String]
        public var jobName = "colony-node"
        public var pollSeconds = 1.0
        /// After a failed `sbatch`, the wait before the next try.
        public var retrySeconds = 10.0

        public init(policy: AllocationPolicy, sbatchArguments: [String], nodeCommand: [String]) {
            self.policy = policy
            self.sbatchArguments = sbatchArguments
            self.nodeCommand = nodeCommand
        }
    }

    /// The metric names, with their help (for the Prometheus registry).
    public enum Metric: String, CaseIterable, Sendable {
        case allocations = "colony_allocations"
        case allocationsSubmitted = "colony_allocations_submitted_total"

        public var help: String {
            switch self {
            case .allocations: "Slurm node jobs of --allocate, by state: requested (waiting for their node to join), running."
            case .allocationsSubmitted: "Slurm node jobs submitted by --allocate."
            }
        }
    }

    private let configuration: Configuration
    private let requests: RequestHandler
    private let logger: Logger?
    private var allocations: [AllocationPolicy.Allocation] = []
    private var nextSubmitSeconds = 0.0
    private var submitted: UInt64 = 0
    private let started = ContinuousClock.now
    private let requestedGauge = Gauge(label: Metric.allocations.rawValue, dimensions: [("state", "requested")])
    private let runningGauge = Gauge(label: Metric.allocations.rawValue, dimensions: [("state", "running")])
    private let submittedCounter = Counter(label: Metric.allocationsSubmitted.rawValue)

    public init(configuration: Configuration, requests: RequestHandler, logger: Logger?) {
        self.configuration = configuration
        self.requests = requests
        self.logger = logger
    }

    /// Allocates and releases until cancelled, then cancels the jobs left.
    public func run() async {
        while !Task.isCancelled {
            await step()
            try? await Task.sleep(for: .seconds(configuration.pollSeconds))
        }
        await cancelAll()
    }

    private var nowSeconds: Double {
        let elapsed = ContinuousClock.now - started
        return elapsed.inSeconds
    }

    private func step() async {
        await forgetEndedJobs()
        let report = await requests.report()
        let decision = configuration.policy.decide(report: report, allocations: &allocations, nowSeconds: nowSeconds)
        for node in decision.drain {
            var request = Colony_V1_DrainRequest()
            request.node = node
            _ = await requests.answer(.drain(request))
            logger?.info("allocation idle, draining its node", metadata: [
                "node": "\(node)", "idle_seconds": "\(configuration.policy.idleSecondsBeforeDrain)",
            ])
        }
        if decision.submit && nowSeconds >= nextSubmitSeconds { await submit(queued: report.queued) }
        let requested = AllocationPolicy.requested(allocations)
        let running = AllocationPolicy.running(allocations, report: report)
        requestedGauge.record(requested)
        runningGauge.record(running)
        await requests.noteAllocation(AllocationStatus(system: "slurm", requested: requested, running: running,
                                                       max: configuration.policy.jobsMax, submitted: submitted))
    }

    private func submit(queued: Int) async {
        let wrap = (configuration.nodeCommand + ["--name"]).map(Self.shellQuoted).joined(separator: " ")
            + " \"slurm-$SLURM_JOB_ID\""
        let arguments = ["sbatch", "--parsable", "--job-name=\(configuration.jobName)"] + configuration.sbatchArguments
            + ["--wrap", "exec \(wrap)"]
        let result = await Self.execute(arguments)
        let jobID = result.output.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        guard result.status == 0, !jobID.isEmpty, jobID.allSatisfy({ $0.isNumber || $0 == "_" }) else {
            nextSubmitSeconds = nowSeconds + configuration.retrySeconds
            logger?.error("sbatch failed; trying again later", metadata: [
                "status": "\(result.status)", "error": "\(result.error.trimmingCharacters(in: .whitespacesAndNewlines))",
                "retry_seconds": "\(configuration.retrySeconds)",
            ])
            return
        }
        allocations.append(AllocationPolicy.Allocation(jobID: jobID))
        submittedCounter.increment()
        submitted += 1
        logger?.info("allocation submitted", metadata: [
            "job": "\(jobID)", "queued": "\(queued)", "allocations": "\(allocations.count)",
        ])
    }

    /// Drops the jobs `squeue` no longer lists (their node left, or Slurm ended them).
    private func forgetEndedJobs() async {
        guard !allocations.isEmpty else { return }
        let result = await Self.execute(["squeue", "--noheader", "--name=\(configuration.jobName)", "--format=%i"])
        // A failed squeue (slurmctld busy or down) forgets nothing.
        guard result.status == 0 else { return }
        let listed = Set(result.output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) })
        let ended = allocations.filter { !listed.contains($0.jobID) }
        for allocation in ended {
            logger?.info("allocation ended", metadata: ["job": "\(allocation.jobID)"])
        }
        allocations.removeAll { !listed.contains($0.jobID) }
    }

    private func cancelAll() async {
        guard !allocations.isEmpty else { return }
        let ids = allocations.map(\.jobID)
        let result = await Self.execute(["scancel"] + ids)
        if result.status != 0 {
            logger?.error("scancel of the allocations failed", metadata: ["jobs": "\(ids.joined(separator: ","))"])
        }
        allocations.removeAll()
        requestedGauge.record(0)
        runningGauge.record(0)
    }

    static func shellQuoted(_ word: String) -> String {
        "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    struct Execution: Sendable {
        var status: Int32
        var output: String
        var error: String
    }

    /// Runs a command found on PATH to its end (off the cooperative pool: it blocks a thread).
    static func execute(_ arguments: [String]) async -> Execution {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments = arguments
                let output = Pipe()
                let error = Pipe()
                process.standardOutput = output
                process.standardError = error
                process.standardInput = FileHandle.nullDevice
                do {
                    try process.run()
                } catch {
                    continuation.resume(returning: Execution(status: -1, output: "", error: "\(arguments[0]): \(error)"))
                    return
                }
                // The commands print little (a job id, a list of ids): stdout then stderr
                // cannot fill a pipe while the other is read.
                let printed = output.fileHandleForReading.readDataToEndOfFile()
                let complained = error.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: Execution(status: process.terminationStatus,
                                                         output: String(decoding: printed, as: UTF8.self),
                                                         error: String(decoding: complained, as: UTF8.self)))
            }
        }
    }
}
