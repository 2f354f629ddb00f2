import Foundation

/// `colony bench --peers`: Python's `concurrent.futures` pools (bench/peers.py) run in the
/// same invocation, right after Colony's figures, so that every figure stands next to its
/// peer's from the same run on the same box, with the ratio.
extension BenchCommand {
    /// What bench/peers.py prints for one pool.
    struct PoolFigures: Decodable {
        var w1TasksPerS: Double?
        var w2P50Us: Double?
        var w2P99Us: Double?
        var w3Speedup: Double?
        var w4IncrPerS: Double?
        var w5Ratio: Double?
        var notCounted: [String: String]?
    }

    struct PeerReport: Decodable {
        var threadPool: PoolFigures
        var processPool: PoolFigures
    }

    /// The pools' figures and Colony's ratios to them; a peer figure that the script did not
    /// count (its outputs were wrong) or could not produce is listed in `notCounted`.
    func poolPeerFigures(colony figures: [(String, Double)]) -> (values: [(String, Double)], notCounted: [String: String]) {
        guard let script = BenchPipeWorkloads.benchScript("peers.py") else {
            return ([], ["py_pools": "bench/peers.py not found (run colony bench from the repository)"])
        }
        guard let python = ProgramRun.find("python3") else { return ([], ["py_pools": "no python3 on PATH"]) }
        let run = try? ProgramRun(python, [script, "--json", "--w3-limit", "\(w3Limit)"], input: "", timeout: BenchPeer.timeout)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let run, run.status == 0, let report = try? decoder.decode(PeerReport.self, from: Data(run.stdout.utf8)) else {
            return ([], ["py_pools": "bench/peers.py failed (status \(run.map { "\($0.status)" } ?? "not run"))"])
        }
        let own = Dictionary(figures, uniquingKeysWith: { first, _ in first })
        var values: [(String, Double)] = []
        var notCounted: [String: String] = [:]
        for (pool, peer) in [("thread", report.threadPool), ("process", report.processPool)] {
            for (key, reason) in peer.notCounted ?? [:] { notCounted["py_\(pool)_\(key)"] = reason }
            let pairs: [(String, Double?)] = [("w1_tasks_per_s", peer.w1TasksPerS), ("w2_p50_us", peer.w2P50Us), ("w2_p99_us", peer.w2P99Us),
                                             ("w3_speedup", peer.w3Speedup), ("w4_incr_per_s", peer.w4IncrPerS), ("w5_ratio", peer.w5Ratio)]
            for (key, value) in pairs {
                guard let value, value > 0 else { continue }
                values.append(("py_\(pool)_\(key)", value))
                // Colony's figure over the peer's: above 1 means Colony is higher (faster for
                // rates and speedups, slower for latencies and ratios to the ideal).
                if let mine = own[key] { values.append(("\(key)_over_py_\(pool)", mine / value)) }
            }
        }
        return (values, notCounted)
    }
}
