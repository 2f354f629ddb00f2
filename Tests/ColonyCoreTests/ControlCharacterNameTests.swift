import ColonyCore
import ColonyModel
import XCTest

/// Names reach error texts, status output and log lines: one with a control character is
/// refused where it comes in, with the name shown escaped, and nothing changes.
final class ControlCharacterNameTests: XCTestCase {
    /// Newline, carriage return, tab, NUL, ESC, DEL and a C1 control (U+0085, NEXT LINE).
    private let controls = ["a\nb", "a\rb", "a\tb", "a\0b", "a\u{1B}[31mb", "a\u{7F}b", "a\u{85}b"]

    private func assertRefused(_ what: String, _ name: String, file: StaticString = #filePath, line: UInt = #line,
                               _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("\(what) \(NameCheck.escaped(name)) was accepted", file: file, line: line)
        } catch let refusal as CoordinatorCore.Refusal {
            let message = refusal.description
            XCTAssertTrue(message.contains("\(what) '\(NameCheck.escaped(name))' contains a control character"), message, file: file, line: line)
            XCTAssertFalse(NameCheck.containsControlCharacter(message), "the refusal itself is one clean line: \(message)", file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    func testHandlerNamesWithControlCharactersAreRefused() throws {
        var core = CoordinatorCore()
        for name in controls {
            assertRefused("task 0: handler name", name) { _ = try core.submit([TaskSubmission(handler: name, input: [])], session: "s") }
        }
        XCTAssertEqual(core.queuedCount, 0)
        // A node announcing such a handler is refused too.
        assertRefused("node handler name", "a\nb") {
            _ = try core.report(node: NodeAnnouncement(name: "n", host: "h", threadSlots: 1, handlers: ["echo", "a\nb"]), results: [], now: 0)
        }
        XCTAssertTrue(core.status(now: 0).nodes.isEmpty)
    }

    func testLabelKeysAndValuesWithControlCharactersAreRefused() throws {
        var core = CoordinatorCore()
        for name in controls {
            assertRefused("task 0: label key", name) {
                _ = try core.submit([TaskSubmission(handler: "echo", input: [], options: TaskOptions(requiredLabels: [name: "1"]))], session: "s")
            }
            assertRefused("task 0: label value", name) {
                _ = try core.submit([TaskSubmission(handler: "echo", input: [], options: TaskOptions(requiredLabels: ["gpu": name]))], session: "s")
            }
            assertRefused("a node: label key", name) {
                _ = try core.report(node: NodeAnnouncement(name: "n", host: "h", threadSlots: 1, labels: [name: "1"]), results: [], now: 0)
            }
            assertRefused("a node: label value", name) {
                _ = try core.report(node: NodeAnnouncement(name: "n", host: "h", threadSlots: 1, labels: ["gpu": name]), results: [], now: 0)
            }
        }
        XCTAssertEqual(core.queuedCount, 0)
        XCTAssertTrue(core.status(now: 0).nodes.isEmpty)
    }

    func testLimitNamesWithControlCharactersAreRefused() throws {
        var core = CoordinatorCore()
        for name in controls {
            assertRefused("limit name", name) { try core.setLimit(name, size: 2) }
            assertRefused("task 0: limit name", name) {
                _ = try core.submit([TaskSubmission(handler: "echo", input: [], options: TaskOptions(uses: [name]))], session: "s")
            }
        }
        XCTAssertTrue(core.allLimits.isEmpty)
        XCTAssertEqual(core.queuedCount, 0)
    }

    func testCounterNamesAndKeysWithControlCharactersAreRefused() throws {
        var core = CoordinatorCore()
        for name in controls {
            assertRefused("counter name", name) { _ = try core.addToCounter(name, 5) }
            assertRefused("counter name", name) { _ = try core.setCounter(name, 5) }
            assertRefused("counter name", name) { _ = try core.compareAndSetCounter(name, expected: 0, new: 5) }
            assertRefused("counter change key", name) { _ = try core.addToCounter("hits", 5, key: name) }
        }
        XCTAssertTrue(core.allCounters.isEmpty)
    }

    func testNodeNamesAndHostsWithControlCharactersAreRefused() throws {
        var core = CoordinatorCore()
        for name in controls {
            assertRefused("node name", name) { _ = try core.report(node: NodeAnnouncement(name: name, host: "h", threadSlots: 1), results: [], now: 0) }
            assertRefused("node host name", name) { _ = try core.report(node: NodeAnnouncement(name: "n", host: name, threadSlots: 1), results: [], now: 0) }
        }
        XCTAssertTrue(core.status(now: 0).nodes.isEmpty)
    }

    func testSessionIdsAndTaskKeysWithControlCharactersAreRefused() throws {
        var core = CoordinatorCore()
        for name in controls {
            assertRefused("session id", name) { _ = try core.submit([TaskSubmission(handler: "echo", input: [])], session: name) }
            assertRefused("task 0: key", name) { _ = try core.submit([TaskSubmission(handler: "echo", input: [], key: name)], session: "s") }
            assertRefused("task 0: pool handler name", name) {
                _ = try core.submit([TaskSubmission(handler: "batch", input: [], poolHandler: name)], session: "s")
            }
        }
        XCTAssertEqual(core.queuedCount, 0)
    }

    func testPrintableNamesAreStillAccepted() throws {
        var core = CoordinatorCore()
        try core.setLimit("db-ü-名前 with spaces", size: 1)
        _ = try core.addToCounter("hits ✓", 1)
        let ids = try core.submit([TaskSubmission(handler: "échô", input: [], options: TaskOptions(uses: ["db-ü-名前 with spaces"],
                                                                                                  requiredLabels: ["zone": "eu west"]))],
                                  session: "s")
        XCTAssertEqual(ids.count, 1)
        _ = try core.report(node: NodeAnnouncement(name: "node ü", host: "host-1", threadSlots: 1, labels: ["zone": "eu west"]), results: [], now: 0)
        XCTAssertEqual(core.status(now: 0).nodes.count, 1)
    }

    func testEscapingShowsEveryControlCharacterOnOneLine() {
        XCTAssertEqual(NameCheck.escaped("a\nb\tc\rd\0e\u{1B}f\u{7F}g\u{85}h\\i"), #"a\nb\tc\rd\0e\u{1B}f\u{7F}g\u{85}h\\i"#)
        XCTAssertEqual(NameCheck.escaped("plain ü"), "plain ü")
        // Exactly Unicode general category Cc, nothing more (U+00A0 is a space, not a control).
        let disagreements = (UInt32(0)...0x10FFFF).compactMap(Unicode.Scalar.init).filter {
            NameCheck.containsControlCharacter(String($0)) != ($0.properties.generalCategory == .control)
        }
        XCTAssertEqual(disagreements.map { String($0.value, radix: 16) }, [])
    }
}
