import ArgumentParser
import Colony
import ColonyCore
import ColonyModel
import ColonyNode
import Foundation
import NNG

// Starting, reaching and measuring the processes `colony bench` runs.
extension BenchCommand {
    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.down)))]
    }

    func freeTCPPort() throws -> Int {
        let probe = try Socket(.rep)
        let listener = try probe.listen("tcp://127.0.0.1:0")
        defer { probe.close() }
        guard let port = listener.boundPort else { throw CLIError("could not find a free TCP port") }
        return port
    }

    func currentExecutable() throws -> URL {
        let path = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        return URL(fileURLWithPath: path)
    }

    func spawn(_ executable: URL, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func stop(_ process: Process) {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    func connectWithRetry(_ url: String) async throws -> ColonyClient {
        var lastError: (any Error)?
        for _ in 0..<100 {
            var options = ColonyClient.Options()
            // The spawned coordinator inherits $COLONY_TOKEN, if set; so does this client.
            options.token = ProcessInfo.processInfo.environment["COLONY_TOKEN"] ?? ""
            do { return try ColonyClient(connect: url, options: options) } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        throw CLIError("benchmark coordinator did not start: \(lastError.map { "\($0)" } ?? "unknown")")
    }

    func waitForNode(_ colony: ColonyClient) async throws {
        for _ in 0..<200 {
            if try await !colony.status().nodes.isEmpty { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CLIError("benchmark node did not join within 10 s")
    }

    func peakRSSMiB(_ pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib / 1024
    }
}
