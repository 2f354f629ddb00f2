import ArgumentParser
import Colony
import ColonyModel
import ColonyCoordinator
import Foundation
import Logging

/// `colony coordinator --allocate slurm ...`: node jobs submitted with sbatch while queued work
/// has no free slot (see `AllocationPolicy`).
struct AllocationOptions: ParsableArguments {
    enum Manager: String, ExpressibleByArgument, CaseIterable {
        case slurm
    }

    @Option(name: .long, help: "Submit node jobs to this workload manager while tasks are queued and no node has a free slot (slurm: sbatch, squeue and scancel on PATH).")
    var allocate: Manager?

    @Option(name: .long, parsing: .unconditional, help: "--allocate: most node jobs at once.")
    var allocateMax: Int = 4

    @Option(name: .long, parsing: .unconditional, help: "--allocate: more sbatch arguments for each node job, split at spaces (e.g. '--partition=cpu --time=02:00:00 --cpus-per-task=16').")
    var allocateArgs: String = ""

    @Option(name: .long, parsing: .unconditional, help: "--allocate: seconds an allocated node may sit idle (nothing queued) before it is drained and its job ends.")
    var allocateIdle: Double = 60

    @Option(name: .long, help: "--allocate: the URL node jobs dial (default: the listen URL, its 0.0.0.0 replaced by this host's name).")
    var allocateCoordinator: String?

    static let idleRange = SecondsRange(1...86_400)

    func validate() throws {
        guard allocate != nil else {
            let given = allocateMax != 4 || !allocateArgs.isEmpty || allocateIdle != 60 || allocateCoordinator != nil
            if given { throw CLIError("--allocate-max, --allocate-args, --allocate-idle and --allocate-coordinator need --allocate slurm") }
            return
        }
        guard allocateMax >= 1, allocateMax <= 10_000 else { throw CLIError("--allocate-max must be 1 to 10000") }
        _ = try Self.idleRange.check(allocateIdle, "--allocate-idle")
        if let allocateCoordinator { try ColonyURL.validate(allocateCoordinator) }
    }

    /// The allocator for a coordinator listening on `listen`, or nil without `--allocate`.
    /// Node jobs get the token through `tokenFile` when there is one, else through the
    /// environment sbatch passes on ($COLONY_TOKEN).
    func allocator(listen: String, tokenFile: String?, requests: RequestHandler, logger: Logger) -> SlurmAllocator? {
        guard allocate == .slurm else { return nil }
        let url = allocateCoordinator ?? listen.replacingOccurrences(of: "0.0.0.0", with: ProcessInfo.processInfo.hostName)
        var node = [Self.ownExecutable, "node", "--coordinator", url]
        if let tokenFile { node += ["--token-file", URL(fileURLWithPath: tokenFile).standardizedFileURL.path] }
        var configuration = SlurmAllocator.Configuration(
            policy: AllocationPolicy(jobsMax: allocateMax, idleSecondsBeforeDrain: allocateIdle),
            sbatchArguments: allocateArgs.split(separator: " ", omittingEmptySubsequences: true).map(String.init),
            nodeCommand: node)
        configuration.pollSeconds = 1
        return SlurmAllocator(configuration: configuration, requests: requests, logger: logger)
    }

    /// This colony binary's absolute path (node jobs run the same one; a shared file system
    /// is assumed, as for the token file).
    static var ownExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
