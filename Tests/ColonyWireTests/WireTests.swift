import ColonyWire
import XCTest

final class WireTests: XCTestCase {
    func testASubmitBatchSurvivesARoundTrip() throws {
        var submit = Colony_V1_SubmitRequest()
        submit.session = "session-1"
        submit.tasks = (0..<1000).map { index in
            var task = Colony_V1_TaskSpec()
            task.handler = "echo"
            task.input = Data("\(index)".utf8)
            return task
        }
        let decoded = try Wire.decode(Wire.encode(.submit(submit)))
        XCTAssertEqual(decoded.version, colonyProtocolVersion)
        guard case .submit(let back) = decoded.body else { return XCTFail("wrong body \(String(describing: decoded.body))") }
        XCTAssertEqual(back, submit)
    }

    func testGarbageIsMalformed() {
        XCTAssertThrowsError(try Wire.decode([0xFF, 0xFF, 0xFF, 0x01, 0x02])) { error in
            guard case .malformed = error as? WireError else { return XCTFail("got \(error)") }
        }
    }

    func testAnotherVersionIsRefusedByName() throws {
        var envelope = Colony_V1_Envelope()
        envelope.version = 99
        envelope.status = Colony_V1_StatusRequest()
        let bytes: [UInt8] = try envelope.serializedBytes()
        XCTAssertThrowsError(try Wire.decode(bytes)) { error in
            XCTAssertEqual(error as? WireError, .unsupportedVersion(99))
            XCTAssertTrue("\(error)".contains("unsupported protocol version 99"))
        }
    }

    func testAnEnvelopeWithoutBodyIsRefused() throws {
        var envelope = Colony_V1_Envelope()
        envelope.version = colonyProtocolVersion
        let bytes: [UInt8] = try envelope.serializedBytes()
        XCTAssertThrowsError(try Wire.decode(bytes)) { XCTAssertEqual($0 as? WireError, .emptyBody) }
    }

    func testOversizedBytesAreRefusedBeforeParsing() {
        XCTAssertThrowsError(try Wire.decode([UInt8](repeating: 0, count: 2048), limit: 1024)) { error in
            XCTAssertEqual(error as? WireError, .tooLarge(bytes: 2048, limit: 1024))
        }
    }
}
