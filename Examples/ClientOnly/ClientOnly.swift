// A program that only submits work: it imports `Colony` (the client) and nothing of the
// coordinator or the node, so it builds without them (and without SQLite).
//   swift run colony-client-example tcp://127.0.0.1:7411
// It counts the primes below 200,000 in ten ranges on whatever nodes the coordinator has.
import Colony
import Foundation

/// The signature of the nodes' built-in `primes` handler: its name and its types.
struct Primes: HandlerSignature {
    struct Range: Codable, Sendable { var lo: Int; var hi: Int }
    typealias Input = Range
    typealias Output = Int
    static let name = "primes"
}

@main
struct ClientOnly {
    static func main() async {
        let url = CommandLine.arguments.dropFirst().first ?? "tcp://127.0.0.1:7411"
        do {
            let client = try ColonyClient(connect: url)
            let ranges = stride(from: 0, to: 200_000, by: 20_000).map { Primes.Range(lo: $0, hi: $0 + 20_000) }
            let counts = try await client.map(Primes.self, ranges)
            await client.close()
            print("primes below 200000: \(counts.reduce(0, +))")
        } catch {
            print("colony-client-example: \(error)")
            exit(1)
        }
    }
}
