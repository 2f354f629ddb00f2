import ArgumentParser
import Colony
import ColonyCore
import ColonyModel
import ColonyNode
import Foundation
import NNG

/// `colony bench`: the workloads of BENCHMARKS.md over tcp on 127.0.0.1, with the coordinator
/// and the node as separate processes and this process as the client.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput and latency (W1-W9) with a coordinator and a node as separate processes.",
        discussion: """
            Build with `swift build -c release` first: debug builds are many times slower.
            W1: no-op (echo) tasks submitted as one map, tasks/s.
            W2: sequential submit-then-wait no-op tasks, p50/p99 latency in microseconds.
            W3: primes below 2,000,000 by trial division in 64 tasks on a node with 2 thread slots,
                wall time and speedup over the same loop run serially in this process; then the
                same in the node's process pool (2 children): w3_process_wall_s, w3_process_speedup.
            W4: 200 tasks x 100 increments of one cluster counter: increments/s, final value (20000).
            W5: 200 sleeps (90% 1 ms, 10% 50 ms, fixed seed) on 2 slots: makespan over sum/slots.
            W7: 300 node processes (1 thread slot each) and 100 clients long-polling for results,
                20,000 echo tasks: tasks/s, nodes declared lost (goal 0), coordinator peak RSS.
                scale_dispatch_us_N: the coordinator core's CPU time per dispatched task with N
                simulated nodes of 64 slots (mixed task lengths, node churn); the goal is at most
                2x from 10 to 1,000 nodes (scale_dispatch_ratio).
            W6: 2,000 commands `echo` through `colony map` (process pool), tasks/s, beside
                `xargs -P2 -n1` and GNU `parallel -j2` on the same inputs. A peer's figure counts
                only when it is the program named and printed every input once; otherwise
                peers_not_counted says why (in --json, an object of figure key to reason).
            W8: 400 fetches from a local server answering after 50 ms on the node (in its io slots),
                median wall of 5 runs, beside Python ThreadPoolExecutor(32) + urllib and asyncio
                (bench/io_peers.py, each the median of 5 runs too).
            W9: the mean of 10,000,000 numbers in 10 chunks through `colony map --pipe` (awk),
                wall time, beside Python ProcessPoolExecutor(2) over the same chunks.
            """
    )

    @Flag(name: .long, help: "Print one JSON object (keys w1_tasks_per_s, w2_p50_us, ...).")
    var json = false

    @Option(name: .long, help: "W1: number of no-op tasks.")
    var w1Tasks = 20_000

    @Option(name: .long, help: "W2: number of sequential tasks.")
    var w2Tasks = 2_000

    @Option(name: .long, help: "W3: count primes below this number.")
    var w3Limit = 2_000_000

    @Option(name: .long, help: "W6: number of commands (for Colony and each peer).")
    var w6Tasks = 2_000

    @Option(name: .long, help: "The transport between client, coordinator and node: nng (tcp://) or colony (colony://, Colony's own framing).")
    var transport: BenchTransport = .nng

    @Option(name: .long, help: "Thread slots of the benchmark node.")
    var threads = 2

    @Option(name: .long, help: "Process slots of the benchmark node (W3 in the process pool, W6).")
    var processes = 2

    @Option(name: .long, help: "Durability: tasks queued before the coordinator is killed and restarted (recovery time).")
    var recoveryTasks = 100_000

    @Flag(name: .long, help: "Skip the durability figures (W1 with a state folder, recovery, node death).")
    var skipDurability = false

    @Flag(name: .long, help: "Skip the scale figures (W7: 300 node processes and 100 waiting clients; the core's dispatch cost at 10, 100 and 1,000 simulated nodes).")
    var skipScale = false

    @Flag(name: .long, help: "Also run Python's thread and process pools on W1-W5 (bench/peers.py) in this run and print Colony's ratio to each (KEY_over_py_POOL).")
    var peers = false

    @Flag(name: .long, help: "Only the scale figures (W7 and the dispatch cost), with --cluster-binary if given.")
    var onlyScale = false

    @Flag(name: .long, help: "Only W0, W1 and W2 (the hot path: round trip, no-op throughput, submit-and-wait latency), with the Python pools if --peers.")
    var onlyHotPath = false

    @Option(name: .long, help: "W7: node processes (1 thread slot each; 0: skip W7).")
    var w7Nodes = 300

    @Option(name: .long, help: "Run the coordinator and nodes of W5b, W5c and W7 from this colony binary (another build, for a before/after in one run); the client is this one.")
    var clusterBinary: String?

    func run() async throws {
        if onlyScale {
            let cluster = try clusterBinary.map { URL(fileURLWithPath: $0) } ?? currentExecutable()
            let scale = try await manyNodesFigures(cluster) + dispatchCostFigures()
            print(Self.render(scale, peersNotCounted: [:], json: json,
                              title: "colony bench --only-scale (cluster: \(cluster.path))"))
            return
        }
        let port = try freeTCPPort()
        let url = "\(transport.scheme)://127.0.0.1:\(port)"
        let executable = try currentExecutable()
        let coordinator = try spawn(executable, ["coordinator", "--listen", url, "--state", ":memory:"])
        defer { stop(coordinator) }
        let node = try spawn(executable, ["node", "--coordinator", url, "--threads", "\(threads)", "--processes", "\(processes)",
                                          "--name", "bench-node", "--allow-exec"])
        defer { stop(node) }

        let colony = try await connectWithRetry(url)
        try await waitForNode(colony)
        var figures: [(String, Double)] = []

        // W0: the floor under W2 on this box: one request/reply round trip to a coordinator
        // (answering an empty request) over each transport, through the client's own link.
        figures.append(contentsOf: try await roundTripFloor(.nng))
        figures.append(contentsOf: try await roundTripFloor(.colony))

        // Warm-up: first connections, allocations, JIT-free but cache-cold paths.
        _ = try await colony.map("echo", Array(0..<2000), as: Int.self)

        // W1
        let clock = ContinuousClock()
        let inputs = Array(0..<w1Tasks)
        var start = clock.now
        let echoed = try await colony.map("echo", inputs, as: Int.self)
        let w1Seconds = (clock.now - start).inSeconds
        guard echoed == inputs else { throw CLIError("W1: outputs differ from inputs") }
        figures.append(("w1_tasks_per_s", Double(w1Tasks) / w1Seconds))

        // W2: `run` (submit and wait in one request), then the two-step submit + result(of:).
        var latencies: [Double] = []
        latencies.reserveCapacity(w2Tasks)
        for i in 0..<w2Tasks {
            let t0 = clock.now
            let result = try await colony.runResult("echo", rawInput: Array("\(i)".utf8))
            latencies.append((clock.now - t0).inSeconds * 1e6)
            guard result.succeeded else { throw CLIError("W2: task failed: \(result.error)") }
        }
        latencies.sort()
        figures.append(("w2_p50_us", percentile(latencies, 0.50)))
        figures.append(("w2_p99_us", percentile(latencies, 0.99)))
        latencies.removeAll(keepingCapacity: true)
        for i in 0..<w2Tasks {
            let t0 = clock.now
            let id = try await colony.submit("echo", input: i)
            _ = try await colony.result(of: id)
            latencies.append((clock.now - t0).inSeconds * 1e6)
        }
        latencies.sort()
        figures.append(("w2_two_step_p50_us", percentile(latencies, 0.50)))
        figures.append(("w2_two_step_p99_us", percentile(latencies, 0.99)))
        if onlyHotPath {
            figures.append(("coordinator_peak_rss_mib", peakRSSMiB(coordinator.processIdentifier)))
            figures.append(("node_peak_rss_mib", peakRSSMiB(node.processIdentifier)))
            await colony.close()
            var peersNotCounted: [String: String] = [:]
            if peers {
                let pools = poolPeerFigures(colony: figures)
                figures.append(contentsOf: pools.values.filter { $0.0.contains("w1_") || $0.0.contains("w2_") })
                peersNotCounted = pools.notCounted
            }
            print(Self.render(figures, peersNotCounted: peersNotCounted, json: json,
                              title: "colony bench --only-hot-path (coordinator, 1 node with \(threads) thread slots, client over \(url))"))
            return
        }

        // W3
        start = clock.now
        let serialCount = PrimesHandler.countPrimes(in: 0..<w3Limit)
        let serialSeconds = (clock.now - start).inSeconds
        let step = (w3Limit + 63) / 64
        let ranges = stride(from: 0, to: w3Limit, by: step).map { PrimesHandler.Range(lo: $0, hi: min($0 + step, w3Limit)) }
        start = clock.now
        let counts = try await colony.map(PrimesHandler.self, ranges)
        let w3Seconds = (clock.now - start).inSeconds
        let total = counts.reduce(0, +)
        guard total == serialCount else { throw CLIError("W3: cluster counted \(total) primes, serial loop \(serialCount)") }
        figures.append(("w3_wall_s", w3Seconds))
        figures.append(("w3_serial_s", serialSeconds))
        figures.append(("w3_speedup", serialSeconds / w3Seconds))
        figures.append(("w3_primes", Double(total)))
        // The same in the process pool: each task's input and result cross one more pipe hop.
        start = clock.now
        let inChildren = try await colony.map(PrimesHandler.name, ranges, as: Int.self, options: TaskOptions(pool: .process))
        let w3ProcessSeconds = (clock.now - start).inSeconds
        guard inChildren.reduce(0, +) == serialCount else { throw CLIError("W3 (process pool): counted \(inChildren.reduce(0, +)) primes, serial loop \(serialCount)") }
        figures.append(("w3_process_wall_s", w3ProcessSeconds))
        figures.append(("w3_process_speedup", serialSeconds / w3ProcessSeconds))

        // W4: 200 tasks x 100 increments of one counter, applied with each task's result.
        let counter = colony.counter("bench-w4")
        _ = try await counter.set(0)
        start = clock.now
        _ = try await colony.map(CountHandler.self, Array(repeating: CountHandler.Input(counter: "bench-w4", times: 100), count: 200))
        let w4Seconds = (clock.now - start).inSeconds
        let w4Final = try await counter.get()
        figures.append(("w4_incr_per_s", 20_000 / w4Seconds))
        figures.append(("w4_final", Double(w4Final)))

        // W5: 200 sleeps, 90% 1 ms and 10% 50 ms (fixed seed), makespan over sum / slots.
        var random = SplitMix64(seed: 42)
        let sleeps = (0..<200).map { _ in random.next() % 10 == 0 ? 0.050 : 0.001 }
        start = clock.now
        // On threads: the sleeps stand for work that holds a slot (`sleep` defaults to io slots).
        _ = try await colony.map("sleep", sleeps, as: Double.self, options: TaskOptions(pool: .thread))
        let w5Makespan = (clock.now - start).inSeconds
        let w5Ideal = sleeps.reduce(0, +) / Double(threads)
        figures.append(("w5_makespan_s", w5Makespan))
        figures.append(("w5_ideal_s", w5Ideal))
        figures.append(("w5_ratio", w5Makespan / w5Ideal))

        // W6: commands `echo` through `colony map` (the whole command, as a user runs it), and
        // the peers on the same inputs; `echo` rather than `true` so that every run shows, by
        // its output, that it ran each command.
        let w6Inputs = (1...max(1, w6Tasks)).map(String.init)
        let map = try ProgramRun(executable.path, ["map", "--coordinator", url, "--", "echo"],
                                 input: w6Inputs.map { $0 + "\n" }.joined(), timeout: BenchPeer.timeout)
        guard map.status == 0 else { throw CLIError("W6: colony map exited with status \(map.status)") }
        if let problem = ProgramRun.echoProblem(map.stdout, inputs: w6Inputs, ordered: true) { throw CLIError("W6: colony map \(problem)") }
        figures.append(("w6_tasks_per_s", Double(w6Inputs.count) / map.seconds))
        var peersNotCounted: [String: String] = [:]
        for peer in [BenchPeer.xargs, .gnuParallel] {
            switch peer.measure(inputs: w6Inputs) {
            case .tasksPerSecond(let rate): figures.append((peer.key, rate))
            case .notCounted(let reason): peersNotCounted[peer.key] = reason
            }
        }
        let pipeAndFetch = try await BenchPipeWorkloads(executable: executable, coordinatorURL: url).run(colony)
        figures.append(contentsOf: pipeAndFetch.values)
        peersNotCounted.merge(pipeAndFetch.notCounted) { $1 }

        figures.append(("coordinator_peak_rss_mib", peakRSSMiB(coordinator.processIdentifier)))
        figures.append(("node_peak_rss_mib", peakRSSMiB(node.processIdentifier)))
        await colony.close()
        stop(node)
        stop(coordinator)
        let cluster = clusterBinary.map { URL(fileURLWithPath: $0) } ?? executable
        figures.append(contentsOf: try await balancingFigures(cluster))
        if !skipDurability { figures.append(contentsOf: try await durabilityFigures(executable)) }
        if !skipScale {
            figures.append(contentsOf: try await manyNodesFigures(cluster))
            figures.append(contentsOf: dispatchCostFigures())
        }
        if peers {
            let pools = poolPeerFigures(colony: figures)
            figures.append(contentsOf: pools.values)
            peersNotCounted.merge(pools.notCounted) { first, _ in first }
        }

        print(Self.render(figures, peersNotCounted: peersNotCounted, json: json,
                          title: "colony bench (coordinator, 1 node with \(threads) thread slots, client: separate processes over \(url))"))
    }

    /// The figures as one JSON object, or as a table under `title`.
    static func render(_ figures: [(String, Double)], peersNotCounted: [String: String], json: Bool, title: String) -> String {
        if json {
            let body = figures.map { key, value in
                let text = abs(value) >= 100 || value == value.rounded() ? String(Int(value.rounded())) : String(format: "%.3f", value)
                return "\"\(key)\": \(text)"
            }.joined(separator: ", ")
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let notCounted = (try? String(decoding: encoder.encode(peersNotCounted), as: UTF8.self)) ?? "{}"
            return "{\(body), \"peers_not_counted\": \(notCounted)}"
        }
        var lines = [title]
        for (key, value) in figures {
            lines.append("  \(key.padding(toLength: 34, withPad: " ", startingAt: 0)) \(String(format: value >= 100 ? "%.0f" : "%.3f", value))")
        }
        for (key, reason) in peersNotCounted.sorted(by: { $0.key < $1.key }) {
            lines.append("  \(key.padding(toLength: 34, withPad: " ", startingAt: 0)) not counted: \(reason)")
        }
        return lines.joined(separator: "\n")
    }

}


extension ColonyClient {
    /// The status, retrying while the coordinator is still starting (recovering).
    func statusWhenUp() async throws -> ClusterStatus {
        let deadline = ContinuousClock.now + .seconds(120)
        while true {
            do { return try await status() } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }
}

/// The transport `colony bench` measures Colony on.
enum BenchTransport: String, ExpressibleByArgument, CaseIterable {
    case nng, colony

    var scheme: String { self == .nng ? "tcp" : "colony" }
}
