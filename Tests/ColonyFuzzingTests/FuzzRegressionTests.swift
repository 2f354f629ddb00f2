import ColonyFuzzing
import Foundation
import XCTest

/// Replays every input the fuzzer ever found a problem with (Tests/FuzzRegressions/), and the
/// harness's seeds, through the same harness the fuzzer runs (scripts/fuzz.sh).
final class FuzzRegressionTests: XCTestCase {
    private var regressionsDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FuzzRegressions")
    }

    func testEveryKeptFinding() async throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: regressionsDirectory.path).sorted()
        XCTAssertFalse(names.isEmpty, "Tests/FuzzRegressions holds the fuzzer's findings")
        for name in names {
            let input = try [UInt8](Data(contentsOf: regressionsDirectory.appendingPathComponent(name)))
            let problems = await FuzzHarness.run(input)
            XCTAssertEqual(problems, [], name)
        }
    }

    func testSeedsRunClean() async {
        for seed in FuzzHarness.seeds() {
            let problems = await FuzzHarness.run(seed.input)
            XCTAssertEqual(problems, [], seed.name)
        }
    }

    func testFramesSplitAnyInputAndRoundTrip() {
        let requests: [[UInt8]] = [[1, 2, 3], [], [9]]
        XCTAssertEqual(FuzzHarness.frames(in: FuzzHarness.input(of: requests)), requests)
        XCTAssertEqual(FuzzHarness.frames(in: [5]), [[5]], "a lone byte is a truncated frame")
        XCTAssertEqual(FuzzHarness.frames(in: [9, 0, 1, 2]), [[1, 2]], "a length past the end takes what remains")
    }

    /// The harness must notice a broken reply, or a clean run would mean nothing.
    func testTheHarnessNoticesARequestEchoedAsAReply() {
        let firstRequest = FuzzHarness.frames(in: FuzzHarness.seeds()[0].input)[0]
        XCTAssertNotNil(FuzzHarness.replyProblemForTesting(firstRequest))
        XCTAssertNotNil(FuzzHarness.replyProblemForTesting([0xFF, 0x00]))
    }
}
