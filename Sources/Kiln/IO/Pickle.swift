import Foundation

/// A reader for the subset of Python's pickle that `torch.save(state_dict)` writes — the subset
/// PyTorch's `weights_only` loader accepts. It is a data parser, not an interpreter: the only
/// "callables" are a fixed allow-list (OrderedDict, tensor and parameter rebuilders, storage
/// types) that build values here; any other global is refused by name before anything else runs.
///
/// Containers are not nested Swift values but handles into one flat `Document`: a hostile file
/// of a million nested tuples, or a dict that holds itself (memo), then costs no recursion to
/// build, traverse or free.
public enum Pickle {
    /// A decoded value; containers are handles into the `Document` that holds them.
    public enum Value: Hashable {
        case none
        case bool(Bool)
        case int(Int)
        case float(Double)
        case string(String)
        case bytes([UInt8])
        case tuple(Int)
        case list(Int)
        case dict(Int)
        case global(String)
        case storage(StorageRef)
        case tensor(TensorRef)
    }

    /// A storage named by a persistent id: `('storage', torch.FloatStorage, '0', 'cpu', numel)`.
    public struct StorageRef: Hashable {
        public let key: String
        public let dtype: String
        public let count: Int
    }

    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`.
    public struct TensorRef: Hashable {
        public let storage: StorageRef
        public let offset: Int
        public let shape: [Int]
        public let strides: [Int]
    }

    /// The parsed pickle: its root value and the contents of every container.
    public struct Document {
        public fileprivate(set) var root: Value = .none
        /// Items of tuples and lists (sets too), by handle.
        public fileprivate(set) var sequences: [[Value]] = []
        /// Entries of dicts, by handle.
        public fileprivate(set) var dicts: [[(key: Value, value: Value)]] = []

        /// The items of a tuple or list.
        public func items(_ value: Value) -> [Value]? {
            switch value {
            case let .tuple(h), let .list(h): sequences[h]
            default: nil
            }
        }

        /// The entries of a dict, in insertion order.
        public func entries(_ value: Value) -> [(key: Value, value: Value)]? {
            if case let .dict(h) = value { dicts[h] } else { nil }
        }

        /// The value under a string key of a dict.
        public func lookup(_ dict: Value, _ key: String) -> Value? {
            entries(dict)?.first { $0.key == .string(key) }?.value
        }
    }

    public static let allowedGlobals: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.DoubleStorage",
        "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage",
        "torch.BoolStorage",
    ]

    public static func load(_ bytes: [UInt8], file: String) throws -> Document {
        var reader = Reader(bytes: bytes, file: file)
        return try reader.run()
    }

    /// A name as it may be printed in a message: control characters escaped.
    static func printable(_ text: String) -> String {
        text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
    }

    struct Reader {
        let bytes: [UInt8]
        let file: String
        var pos = 0
        var stack: [Value] = []
        /// Stack heights at each MARK (innermost last).
        var marks: [Int] = []
        var memo: [Int: Value] = [:]
        var document = Document()

        func fail(_ detail: String) -> CheckpointError { CheckpointError(file: file, detail: "pickle: \(detail)") }

        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, n <= bytes.count - pos else {
                throw fail("a \(n)-byte field at offset \(pos) runs past the end (\(bytes.count) bytes)")
            }
            defer { pos += n }
            return bytes[pos..<pos + n]
        }

        mutating func uint(_ n: Int) throws -> Int {
            let value = try take(n).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard value <= UInt64(Int.max) else { throw fail("length \(value) out of range at offset \(pos)") }
            return Int(value)
        }

        mutating func line() throws -> String {
            guard let end = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("unterminated line at offset \(pos)") }
            defer { pos = end + 1 }
            return String(decoding: bytes[pos..<end], as: UTF8.self)
        }

        mutating func pop() throws -> Value {
            guard stack.count > (marks.last ?? 0), let value = stack.popLast() else { throw fail("stack underflow at offset \(pos)") }
            return value
        }

        func top() throws -> Value {
            guard stack.count > (marks.last ?? 0), let value = stack.last else { throw fail("empty stack at offset \(pos)") }
            return value
        }

        mutating func popMark() throws -> [Value] {
            guard let mark = marks.popLast() else { throw fail("no MARK at offset \(pos)") }
            defer { stack.removeSubrange(mark...) }
            return Array(stack[mark...])
        }

        mutating func sequence(_ items: [Value], list: Bool = false) -> Value {
            document.sequences.append(items)
            return list ? .list(document.sequences.count - 1) : .tuple(document.sequences.count - 1)
        }

        mutating func dict() -> Value {
            document.dicts.append([])
            return .dict(document.dicts.count - 1)
        }

        func global(_ module: String, _ name: String) throws -> Value {
            let qualified = "\(module).\(name)"
            guard Pickle.allowedGlobals.contains(qualified) else {
                throw CheckpointError(
                    file: file,
                    detail:
                        "refusing to load: the pickle names the global '\(Pickle.printable(qualified))', which is not a tensor, storage or OrderedDict (a checkpoint never needs it; it could run code)"
                )
            }
            return .global(qualified)
        }

        mutating func run() throws -> Document {
            while true {
                let opcode = try take(1).first!
                switch opcode {
                case 0x80: _ = try take(1)  // PROTO
                case 0x95: _ = try take(8)  // FRAME
                case 0x2E: document.root = try pop(); return document  // STOP
                case 0x28: marks.append(stack.count)  // MARK
                case 0x29: stack.append(sequence([]))  // EMPTY_TUPLE
                case 0x74: stack.append(sequence(try popMark()))  // TUPLE
                case 0x85: let a = try pop(); stack.append(sequence([a]))  // TUPLE1
                case 0x86: let b = try pop(), a = try pop(); stack.append(sequence([a, b]))
                case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(sequence([a, b, c]))
                case 0x5D, 0x8F: stack.append(sequence([], list: true))  // EMPTY_LIST, EMPTY_SET
                case 0x6C: stack.append(sequence(try popMark(), list: true))  // LIST
                case 0x91: stack.append(sequence(try popMark()))  // FROZENSET
                case 0x61: let v = try pop(); try append([v])  // APPEND
                case 0x65, 0x90: try append(try popMark())  // APPENDS, ADDITEMS
                case 0x7D: stack.append(dict())  // EMPTY_DICT
                case 0x64: let items = try popMark(); stack.append(dict()); try setItems(items)  // DICT
                case 0x73: let v = try pop(), k = try pop(); try setItems([k, v])
                case 0x75: try setItems(try popMark())  // SETITEMS
                case 0x71: memo[try uint(1)] = try top()  // BINPUT
                case 0x72: memo[try uint(4)] = try top()  // LONG_BINPUT
                case 0x70: memo[try decimal(try line())] = try top()  // PUT
                case 0x94: memo[memo.count] = try top()  // MEMOIZE
                case 0x68: try push(memoKey: try uint(1))  // BINGET
                case 0x6A: try push(memoKey: try uint(4))  // LONG_BINGET
                case 0x67: try push(memoKey: try decimal(try line()))  // GET
                case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
                case 0x4B: stack.append(.int(try uint(1)))  // BININT1
                case 0x4D: stack.append(.int(try uint(2)))  // BININT2
                case 0x8A: stack.append(.int(try long(try uint(1))))  // LONG1
                case 0x8B: stack.append(.int(try long(try uint(4))))  // LONG4
                case 0x49, 0x4C: stack.append(try textInteger(try line()))  // INT, LONG (protocol 0)
                case 0x46:  // FLOAT (protocol 0)
                    let text = try line()
                    guard let value = Double(text) else { throw fail("bad FLOAT '\(Pickle.printable(text))'") }
                    stack.append(.float(value))
                case 0x4E: stack.append(Value.none)  // NONE
                case 0x88: stack.append(.bool(true))  // NEWTRUE
                case 0x89: stack.append(.bool(false))  // NEWFALSE
                case 0x47:  // BINFLOAT (big-endian)
                    stack.append(.float(Double(bitPattern: try take(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
                case 0x58: stack.append(.string(try text(try uint(4))))  // BINUNICODE
                case 0x8C: stack.append(.string(try text(try uint(1))))  // SHORT_BINUNICODE
                case 0x8D: stack.append(.string(try text(try uint(8))))  // BINUNICODE8
                case 0x56: stack.append(.string(try line()))  // UNICODE (raw-unicode-escape, ASCII subset)
                case 0x55: stack.append(.bytes(Array(try take(try uint(1)))))  // SHORT_BINSTRING
                case 0x54: stack.append(.bytes(Array(try take(try uint(4)))))  // BINSTRING
                case 0x43: stack.append(.bytes(Array(try take(try uint(1)))))  // SHORT_BINBYTES
                case 0x42: stack.append(.bytes(Array(try take(try uint(4)))))  // BINBYTES
                case 0x8E, 0x96: stack.append(.bytes(Array(try take(try uint(8)))))  // BINBYTES8, BYTEARRAY8
                case 0x53: stack.append(.string(try quoted(try line())))  // STRING (protocol 0)
                case 0x63: let module = try line(), name = try line(); stack.append(try global(module, name))  // GLOBAL
                case 0x93:  // STACK_GLOBAL
                    guard case let .string(name) = try pop(), case let .string(module) = try pop() else { throw fail("bad STACK_GLOBAL") }
                    stack.append(try global(module, name))
                case 0x69:  // INST: class named inline, arguments since MARK
                    let module = try line(), name = try line()
                    let callable = try global(module, name)
                    let args = try popMark()
                    stack.append(try reduce(callable, sequence(args)))
                case 0x52: let args = try pop(), callable = try pop(); stack.append(try reduce(callable, args))  // REDUCE
                case 0x6F:  // OBJ: class and arguments since MARK
                    let items = try popMark()
                    guard let callable = items.first else { throw fail("empty OBJ at offset \(pos - 1)") }
                    stack.append(try reduce(callable, sequence(Array(items.dropFirst()))))
                case 0x81: let args = try pop(), callable = try pop(); stack.append(try reduce(callable, args))  // NEWOBJ
                case 0x92: _ = try pop(); let args = try pop(), callable = try pop(); stack.append(try reduce(callable, args))  // NEWOBJ_EX
                case 0x62: _ = try pop()  // BUILD: object state (e.g. _metadata) is ignored
                case 0x51: stack.append(try persistent(try pop()))  // BINPERSID
                case 0x50: throw fail("text persistent ids (PERSID) are not written by torch.save")
                case 0x82, 0x83, 0x84:
                    throw fail(
                        "refusing to load: the pickle names a global through the copyreg extension registry (EXT opcodes), which a checkpoint never needs"
                    )
                case 0x30: _ = try pop()  // POP
                case 0x31: _ = try popMark()  // POP_MARK
                case 0x32: stack.append(try top())  // DUP
                default:
                    throw fail(String(format: "unsupported opcode 0x%02X at offset %d", opcode, pos - 1))
                }
            }
        }

        mutating func push(memoKey: Int) throws {
            guard let value = memo[memoKey] else { throw fail("memo key \(memoKey) undefined") }
            stack.append(value)
        }

        func decimal(_ text: String) throws -> Int {
            guard let value = Int(text), value >= 0 else { throw fail("bad memo key '\(Pickle.printable(text))'") }
            return value
        }

        func textInteger(_ text: String) throws -> Value {
            let digits = text.hasSuffix("L") ? String(text.dropLast()) : text
            switch digits {
            case "00": return .bool(false)
            case "01": return .bool(true)
            default:
                guard let value = Int(digits) else { throw fail("bad integer '\(Pickle.printable(text))'") }
                return .int(value)
            }
        }

        func quoted(_ text: String) throws -> String {
            guard text.count >= 2, let q = text.first, q == "'" || q == "\"", text.last == q else {
                throw fail("bad STRING '\(Pickle.printable(text))'")
            }
            return String(text.dropFirst().dropLast())
        }

        mutating func text(_ n: Int) throws -> String {
            guard let s = String(bytes: try take(n), encoding: .utf8) else { throw fail("invalid UTF-8 string at offset \(pos)") }
            return s
        }

        mutating func long(_ n: Int) throws -> Int {
            guard n <= 8 else { throw fail("integer of \(n) bytes") }
            let raw = try take(n)
            guard n > 0 else { return 0 }
            var value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            if n < 8, raw.last! & 0x80 != 0 { value |= ~UInt64(0) << (8 * n) }  // sign-extend
            return Int(Int64(bitPattern: value))
        }

        mutating func append(_ items: [Value]) throws {
            guard case let .list(h) = try top() else { throw fail("APPEND to a non-list at offset \(pos - 1)") }
            document.sequences[h] += items
        }

        mutating func setItems(_ flat: [Value]) throws {
            guard case let .dict(h) = try top() else { throw fail("SETITEM on a non-dict at offset \(pos - 1)") }
            guard flat.count % 2 == 0 else { throw fail("odd SETITEMS at offset \(pos - 1)") }
            for i in stride(from: 0, to: flat.count, by: 2) { document.dicts[h].append((flat[i], flat[i + 1])) }
        }

        func persistent(_ pid: Value) throws -> Value {
            guard let parts = document.items(pid), parts.count == 5, case .string("storage") = parts[0],
                case let .global(type) = parts[1], case let .string(key) = parts[2], case let .int(count) = parts[4]
            else {
                throw fail("unexpected persistent id at offset \(pos - 1)")
            }
            guard count >= 0 else { throw fail("storage '\(Pickle.printable(key))' has a negative size \(count)") }
            let dtype = String(type.dropFirst("torch.".count).dropLast("Storage".count))
            return .storage(StorageRef(key: key, dtype: dtype, count: count))
        }

        func integers(_ values: [Value]) throws -> [Int] {
            try values.map { if case let .int(i) = $0 { i } else { throw fail("non-integer tensor size") } }
        }

        mutating func reduce(_ callable: Value, _ args: Value) throws -> Value {
            guard case let .global(name) = callable, case .tuple = args, let a = document.items(args) else {
                throw fail("REDUCE of a non-global at offset \(pos - 1)")
            }
            switch name {
            case "collections.OrderedDict":
                guard a.isEmpty else { throw fail("OrderedDict with arguments") }
                return dict()
            case "torch._utils._rebuild_tensor_v2":
                guard a.count >= 4, case let .storage(storage) = a[0], case let .int(offset) = a[1],
                    let size = document.items(a[2]), let stride = document.items(a[3])
                else { throw fail("malformed _rebuild_tensor_v2 arguments") }
                return .tensor(TensorRef(storage: storage, offset: offset, shape: try integers(size), strides: try integers(stride)))
            case "torch._utils._rebuild_parameter":
                guard let data = a.first else { throw fail("malformed _rebuild_parameter") }
                return data
            default:
                throw fail("'\(name)' is not callable")
            }
        }
    }
}
