import Testing
@testable import Kiln

struct PickleTests {
    @Test func parsesScalarsContainersAndNone() throws {
        // {'a': None, 'b': 5, 'c': (1.5, True, [-2, 'x'])} as pickle protocol 2.
        var bytes: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0x00, 0x28]
        bytes += [0x58, 1, 0, 0, 0, 0x61, 0x4E]  // 'a': None
        bytes += [0x58, 1, 0, 0, 0, 0x62, 0x4B, 5]  // 'b': 5
        bytes += [0x58, 1, 0, 0, 0, 0x63, 0x47, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0, 0x88]  // 'c': (1.5, True,
        bytes += [0x5D, 0x28, 0x8A, 1, 0xFE, 0x58, 1, 0, 0, 0, 0x78, 0x65, 0x87]  //   [-2, 'x'])
        bytes += [0x75, 0x2E]
        let document = try Pickle.load(bytes, file: "test")
        let dict = document.root
        #expect(document.entries(dict)?.count == 3)
        #expect(document.lookup(dict, "a") == Pickle.Value.none)
        #expect(document.lookup(dict, "b") == .int(5))
        guard let c = document.lookup(dict, "c"), let items = document.items(c), items.count == 3,
            case .float(1.5) = items[0], case .bool(true) = items[1], let list = document.items(items[2])
        else {
            Issue.record("c decoded wrongly"); return
        }
        #expect(list == [.int(-2), .string("x")])
    }

    @Test func rejectsUnknownOpcodesAndTruncation() {
        #expect(throws: CheckpointError.self) { try Pickle.load([0x80, 0x02, 0xFF], file: "t") }  // no such opcode
        #expect(throws: CheckpointError.self) { try Pickle.load([0x80, 0x02, 0x58, 9, 0, 0, 0, 0x61], file: "t") }
        #expect(throws: CheckpointError.self) { try Pickle.load([0x80, 0x02, 0x63] + Array("posix\nsystem\n".utf8) + [0x2E], file: "t") }
    }
}
