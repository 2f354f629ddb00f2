import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, its standard streams on pipes.
///
/// Foundation's `Process` costs about 1 ms more per command here (it sets up a run-loop
/// source and scans descriptors); `exec` tasks are often tiny commands, so they spawn directly.
/// Every pipe end the parent keeps is close-on-exec, so commands spawned at the same time on
/// other threads never inherit (and hold open) each other's pipes: pipe2 is a GNU extension
/// Swift does not see, so pipes are made and marked under one lock that every spawn takes.
struct SpawnedProcess {
    private static let spawnLock = NSLock()
    /// Whether this process is a process-pool child (read once: the environment does not
    /// change, and building it per command would cost on every `exec` task).
    private static let insidePoolChild = ProcessInfo.processInfo.environment[ProcessPoolChild.parentVariable] != nil

    let pid: pid_t
    let stdout: Int32
    let stderr: Int32
    /// Write end of the child's standard input, or -1 when it reads /dev/null.
    let stdin: Int32
    /// It leads a process group of its own: stopping it kills the whole group.
    var leadsGroup = false

    /// Starts `executable` with `arguments` (argv[0] included) in `directory`.
    static func start(executable: String, arguments: [String], environment: [String: String],
                      directory: String?, withStdin: Bool) throws -> SpawnedProcess {
        spawnLock.lock()
        defer { spawnLock.unlock() }
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        var inPipe: [Int32] = [-1, -1]
        guard makePipe(&outPipe), makePipe(&errPipe), !withStdin || makePipe(&inPipe) else {
            let reason = String(cString: strerror(errno))
            for fd in outPipe + errPipe + inPipe where fd >= 0 { close(fd) }
            throw ValidationFailure("cannot create pipes: \(reason)")
        }
        // posix_spawn_file_actions_addchdir_np is not visible to Swift either: a working
        // directory goes through sh, which changes to it and execs the command.
        var arguments = arguments
        var executable = executable
        if let directory {
            arguments = ["/bin/sh", "-c", "cd -- \"$0\" && exec \"$@\"", directory] + arguments
            executable = "/bin/sh"
        }
        // A command leads a process group of its own (unless it runs inside a process-pool
        // child, whose group it joins), so that a timeout or a cancellation kills everything it
        // started, not only its shell.
        let ownGroup = !Self.insidePoolChild
        let (pid, rv) = spawn(executable, arguments, environment, newGroup: ownGroup) { actions in
            if withStdin {
                posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
            } else {
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            }
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
            posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
            if !ownGroup {
                // In a process-pool child: the command must not hold the child's task and
                // result pipes (descriptors 3 and 4), or the node would not see the child end.
                posix_spawn_file_actions_addclose(&actions, 3)
                posix_spawn_file_actions_addclose(&actions, 4)
            }
        }
        // The child's ends are the child's now.
        close(outPipe[1])
        close(errPipe[1])
        if withStdin { close(inPipe[0]) }
        guard rv == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            if withStdin { close(inPipe[1]) }
            throw ValidationFailure("cannot start \(executable): \(String(cString: strerror(rv)))")
        }
        return SpawnedProcess(pid: pid, stdout: outPipe[0], stderr: errPipe[0], stdin: withStdin ? inPipe[1] : -1, leadsGroup: ownGroup)
    }

    /// Starts a process-pool child: `executable` with `arguments`, the node's stdin (none) and
    /// stdout, its stderr on a pipe (read by the node for crash reasons), and two more pipes:
    /// tasks in on descriptor 3, results out on descriptor 4.
    static func startPoolChild(executable: String, arguments: [String], environment: [String: String]) throws -> PoolChildProcess {
        spawnLock.lock()
        defer { spawnLock.unlock() }
        var tasks: [Int32] = [-1, -1]
        var results: [Int32] = [-1, -1]
        var errors: [Int32] = [-1, -1]
        guard makePipe(&tasks), makePipe(&results), makePipe(&errors) else {
            let reason = String(cString: strerror(errno))
            for fd in tasks + results + errors where fd >= 0 { close(fd) }
            throw ValidationFailure("cannot create pipes: \(reason)")
        }
        // Each child leads a process group: killing the group (`kill(-pid)`) also ends the
        // commands its `exec` tasks started.
        let (pid, rv) = spawn(executable, arguments, environment, newGroup: true) { actions in
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
            posix_spawn_file_actions_adddup2(&actions, tasks[0], 3)
            posix_spawn_file_actions_adddup2(&actions, results[1], 4)
        }
        close(tasks[0])
        close(results[1])
        close(errors[1])
        guard rv == 0 else {
            close(tasks[1])
            close(results[0])
            close(errors[0])
            throw ValidationFailure("cannot start \(executable): \(String(cString: strerror(rv)))")
        }
        return PoolChildProcess(pid: pid, tasks: tasks[1], results: results[0], stderr: errors[0])
    }

    /// posix_spawn with the descriptors `arrange` sets up, default signal handling and an
    /// empty signal mask (the node itself ignores SIGINT/SIGTERM and SIGPIPE). Returns the pid
    /// and posix_spawn's result.
    private static func spawn(_ executable: String, _ arguments: [String], _ environment: [String: String], newGroup: Bool,
                              arrange: (inout posix_spawn_file_actions_t) -> Void) -> (pid_t, Int32) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        arrange(&actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (newGroup ? POSIX_SPAWN_SETPGROUP : 0)))
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let rv = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        return (pid, rv)
    }

    private static func makePipe(_ ends: inout [Int32]) -> Bool {
        guard pipe(&ends) == 0 else { return false }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        return true
    }

    /// How a child ended.
    enum Termination: Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Blocks until the child ends (call it off Swift's cooperative pool).
    func waitForExit() -> Termination {
        Self.waitForExit(pid)
    }

    static func waitForExit(_ pid: pid_t) -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
        let signal = status & 0x7F
        return signal == 0 ? .exited((status >> 8) & 0xFF) : .signalled(signal)
    }

    /// What `communicate` collected.
    struct Collected {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var truncated = false
        var timedOut = false
        var cancelled = false
        var termination: Termination = .exited(-1)
    }

    /// Feeds `input` to the child, drains its stdout and stderr (keeping `limit` bytes of
    /// each) and reaps it, all on the calling thread with poll(2): no helper threads, so a
    /// node running many small commands does not wait for Dispatch to grow its thread pool.
    /// Past `deadline`, or once `isCancelled` says so, the child is killed. Every read is also
    /// given to `onOutput` (true: stdout) as it arrives, the bytes past `limit` included.
    func communicate(input: [UInt8], limit: Int, deadline: ContinuousClock.Instant?, isCancelled: () -> Bool,
                     onOutput: ((Bool, ArraySlice<UInt8>) -> Void)? = nil) -> Collected {
        var collected = Collected()
        var open: [Int32] = [stdout, stderr]
        var inputOffset = 0
        var stdinOpen = stdin >= 0
        if stdinOpen && input.isEmpty {
            close(stdin)
            stdinOpen = false
        }
        var killed = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        let clock = ContinuousClock()
        while !open.isEmpty || stdinOpen {
            if !killed {
                if isCancelled() {
                    collected.cancelled = true
                } else if let deadline, clock.now >= deadline {
                    collected.timedOut = true
                }
                if collected.cancelled || collected.timedOut {
                    kill(leadsGroup ? -pid : pid, SIGKILL)
                    killed = true
                }
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if stdinOpen { fds.append(pollfd(fd: stdin, events: Int16(POLLOUT), revents: 0)) }
            // Wake at least every 20 ms to notice a deadline or a cancellation.
            let ready = poll(&fds, nfds_t(fds.count), 20)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 { continue }
            for entry in fds where entry.revents != 0 {
                if entry.fd == stdin && stdinOpen {
                    if entry.revents & Int16(POLLOUT) != 0 && inputOffset < input.count {
                        let chunk = min(4096, input.count - inputOffset)
                        let written = input.withUnsafeBytes { write(stdin, $0.baseAddress! + inputOffset, chunk) }
                        if written > 0 { inputOffset += written }
                    }
                    if inputOffset >= input.count || entry.revents & Int16(POLLERR | POLLHUP) != 0 {
                        close(stdin)
                        stdinOpen = false
                    }
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count <= 0 {
                    if count < 0 && errno == EINTR { continue }
                    close(entry.fd)
                    open.removeAll { $0 == entry.fd }
                    continue
                }
                let isOut = entry.fd == stdout
                onOutput?(isOut, buffer[0..<count])
                let kept = isOut ? collected.stdout.count : collected.stderr.count
                let room = max(0, limit - kept)
                if room > 0 {
                    if isOut { collected.stdout += buffer[0..<min(room, count)] } else { collected.stderr += buffer[0..<min(room, count)] }
                }
                if count > room { collected.truncated = true }
            }
        }
        collected.termination = waitForExit()
        return collected
    }
}

/// A process-pool child as its node sees it: its pid and the node's ends of its pipes.
struct PoolChildProcess {
    let pid: pid_t
    /// Write end: tasks to the child (its descriptor 3).
    let tasks: Int32
    /// Read end: results from the child (its descriptor 4).
    let results: Int32
    /// Read end of the child's stderr.
    let stderr: Int32
}
