/// Which of a task's output streams: an exec command's stdout or stderr (handlers' log lines
/// go to stderr).
public enum LogStream: Sendable, Hashable, CaseIterable {
    case stdout, stderr
}
