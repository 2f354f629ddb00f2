/// The host and port of a `colony://HOST:PORT` URL: Colony's own framing on TCP (the
/// coordinator serves it beside, or instead of, nng's schemes; see docs/PROTOCOL.md).
public struct FramedAddress: Sendable, Equatable {
    public static let scheme = "colony://"

    public var host: String
    public var port: Int

    /// Nil for another scheme or a URL without a port from 0 to 65535.
    public init?(url: String) {
        guard url.hasPrefix(Self.scheme) else { return nil }
        let rest = url.dropFirst(Self.scheme.count)
        let hostPort = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? rest
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]),
              (0...65_535).contains(port), colon > hostPort.startIndex else { return nil }
        host = String(hostPort[..<colon])
        self.port = port
    }
}
