import ColonyModel
import ColonyWire
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The child side of a node's process pool.
///
/// A child is the node's own executable started again with `COLONY_CHILD_OF=<node pid>` in
/// its environment; its `main` calls `ProcessPoolChild.run(handlers:)` before anything else
/// (`colony` and `ColonyNodeMain` do), so users' own node executables get a process pool
/// with their own handlers for free. The child reads tasks from descriptor 3, runs each with
/// the same handlers as the node, writes results to descriptor 4, and exits at end-of-file
/// or as soon as its node is gone (it checks its parent five times a second, so even a child
/// busy in a handler does not outlive a node killed with SIGKILL).
public enum ProcessPoolChild {
    static let parentVariable = "COLONY_CHILD_OF"
    static let nodeNameVariable = "COLONY_CHILD_NODE"
    static let memoryLimitVariable = "COLONY_CHILD_MEMORY_LIMIT"
    static let allowExecVariable = "COLONY_CHILD_ALLOW_EXEC"

    /// Whether this process was started as a process-pool child.
    public static var isRequested: Bool { getenv(parentVariable) != nil }

    /// Whether the node that started this child allows `exec`.
    public static var allowsExec: Bool { ProcessInfo.processInfo.environment[allowExecVariable] == "1" }

    /// Serves tasks until the node closes the pipe or dies; never returns.
    public static func run(handlers: HandlerRegistry) async -> Never {
        let environment = ProcessInfo.processInfo.environment
        guard let parent = environment[parentVariable].flatMap(Int32.init), getppid() == parent else { exit(0) }
        // Ctrl-C reaches the whole process group; the node decides when its children end.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let watcher = Thread {
            while true {
                // Orphaned: end the whole group (this child and any command an exec task
                // started), not only this process.
                if getppid() != parent {
                    kill(0, SIGKILL)
                    _exit(0)
                }
                usleep(200_000)
            }
        }
        watcher.name = "colony-child-watch"
        watcher.start()
        if let limit = environment[memoryLimitVariable].flatMap(UInt.init) {
            var bounds = rlimit(rlim_cur: rlim_t(limit), rlim_max: rlim_t(limit))
            if setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &bounds) != 0 {
                FileHandle.standardError.write(Data("colony child: cannot set the memory limit: \(String(cString: strerror(errno)))\n".utf8))
                exit(70)
            }
        }
        var registry = handlers
        registry.register(BatchHandler.handler(over: handlers))
        let nodeName = environment[nodeNameVariable] ?? "child"
        let tasksIn: Int32 = 3
        let resultsOut: Int32 = 4
        let outputLock = NSLock()
        guard Frames.write([], to: resultsOut) else { exit(0) }
        while true {
            guard let frame = Frames.read(from: tasksIn) else { exit(0) }
            let result: Colony_V1_TaskResult
            if let task = try? Colony_V1_Task(serializedBytes: frame) {
                result = await NodeAgent.execute(task, registry: registry, nodeName: nodeName, outputBytesMax: colonyMessageBytesMax,
                                                  stop: StopSignal(), poolKind: .process, output: { chunk in
                    // Output goes between the task and its result on the same pipe, so the
                    // node has all of it before the result.
                    guard let bytes = try? chunk.serializedBytes() as [UInt8] else { return }
                    outputLock.withLock { _ = Frames.write(bytes, to: resultsOut, output: true) }
                })
            } else {
                var failed = Colony_V1_TaskResult()
                failed.error = "process pool child could not read its task"
                result = failed
            }
            guard let bytes = try? result.serializedBytes() as [UInt8],
                  outputLock.withLock({ Frames.write(bytes, to: resultsOut) }) else { exit(0) }
        }
    }
}
