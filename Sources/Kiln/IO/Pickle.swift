import Foundation

/// A reader for the subset of Python's pickle that `torch.save(state_dict)` writes — the subset
/// PyTorch's `weights_only` loader accepts. It is a data parser, not an interpreter: the only
/// "callables" are a fixed allow-list (OrderedDict, tensor and parameter rebuilders, storage
/// types) that build values here; any other global is refused by name before anything else runs.
public enum Pickle {
    /// A decoded value. Lists and dicts are reference boxes so memoised containers can be filled later.
    public indirect enum Value {
        case none
        case bool(Bool)
        case int(Int)
        case float(Double)
        case string(String)
        case bytes([UInt8])
        case tuple([Value])
        case list(ListBox)
        case dict(DictBox)
        case global(String)
        case storage(StorageRef)
        case tensor(TensorRef)
    }

    public final class ListBox { public var items: [Value] = [] }
    public final class DictBox {
        public var items: [(key: Value, value: Value)] = []
        public subscript(key: String) -> Value? {
            items.first { if case let .string(k) = $0.key { k == key } else { false } }?.value
        }
    }

    /// A storage named by a persistent id: `('storage', torch.FloatStorage, '0', 'cpu', numel)`.
    public struct StorageRef {
        public let key: String
        public let dtype: String
        public let count: Int
    }

    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`.
    public struct TensorRef {
        public let storage: StorageRef
        public let offset: Int
        public let shape: [Int]
        public let strides: [Int]
    }

    public static let allowedGlobals: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.DoubleStorage",
        "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage",
        "torch.BoolStorage",
    ]

    public static func load(_ bytes: [UInt8], file: String) throws -> Value {
        var reader = Reader(bytes: bytes, file: file)
        return try reader.run()
    }

    struct Reader {
        let bytes: [UInt8]
        let file: String
        var pos = 0
        var stack: [Value?] = []  // nil marks a MARK
        var memo: [Int: Value] = [:]

        func fail(_ detail: String) -> CheckpointError { CheckpointError(file: file, detail: "pickle: \(detail)") }

        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, pos + n <= bytes.count else { throw fail("truncated at offset \(pos)") }
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
            guard let last = stack.popLast(), let value = last else { throw fail("stack underflow at offset \(pos)") }
            return value
        }

        mutating func popMark() throws -> [Value] {
            guard let mark = stack.lastIndex(where: { $0 == nil }) else { throw fail("no MARK at offset \(pos)") }
            let items = stack[(mark + 1)...].map { $0! }
            stack.removeSubrange(mark...)
            return items
        }

        mutating func global(_ module: String, _ name: String) throws -> Value {
            let qualified = "\(module).\(name)"
            guard Pickle.allowedGlobals.contains(qualified) else {
                throw CheckpointError(file: file, detail: "refusing to load: the pickle names the global '\(qualified)', which is not a tensor, storage or OrderedDict (a checkpoint never needs it; it could run code)")
            }
            return .global(qualified)
        }

        mutating func run() throws -> Value {
            while true {
                let opcode = try take(1).first!
                switch opcode {
                case 0x80: _ = try take(1)                                     // PROTO
                case 0x95: _ = try take(8)                                     // FRAME
                case 0x2E: return try pop()                                    // STOP
                case 0x28: stack.append(nil)                                   // MARK
                case 0x29: stack.append(.tuple([]))                            // EMPTY_TUPLE
                case 0x74: stack.append(.tuple(try popMark()))                 // TUPLE
                case 0x85: stack.append(.tuple([try pop()]))                   // TUPLE1
                case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))
                case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
                case 0x5D: stack.append(.list(ListBox()))                      // EMPTY_LIST
                case 0x61: let v = try pop(); try append([v])                  // APPEND
                case 0x65: try append(try popMark())                           // APPENDS
                case 0x7D: stack.append(.dict(DictBox()))                      // EMPTY_DICT
                case 0x73: let v = try pop(), k = try pop(); try setItems([k, v])
                case 0x75: try setItems(try popMark())                         // SETITEMS
                case 0x71: memo[try uint(1)] = try top()                       // BINPUT
                case 0x72: memo[try uint(4)] = try top()                       // LONG_BINPUT
                case 0x94: memo[memo.count] = try top()                        // MEMOIZE
                case 0x68: try push(memoKey: try uint(1))                      // BINGET
                case 0x6A: try push(memoKey: try uint(4))                      // LONG_BINGET
                case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
                case 0x4B: stack.append(.int(try uint(1)))                     // BININT1
                case 0x4D: stack.append(.int(try uint(2)))                     // BININT2
                case 0x8A: stack.append(.int(try long(try uint(1))))           // LONG1
                case 0x4E: stack.append(Value.none)                                 // NONE
                case 0x88: stack.append(.bool(true))                           // NEWTRUE
                case 0x89: stack.append(.bool(false))                          // NEWFALSE
                case 0x47: stack.append(.float(Double(bitPattern: try take(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))  // BINFLOAT (big-endian)
                case 0x58: stack.append(.string(try text(try uint(4))))        // BINUNICODE
                case 0x8C: stack.append(.string(try text(try uint(1))))        // SHORT_BINUNICODE
                case 0x8D: stack.append(.string(try text(try uint(8))))        // BINUNICODE8
                case 0x43: stack.append(.bytes(Array(try take(try uint(1)))))  // SHORT_BINBYTES
                case 0x42: stack.append(.bytes(Array(try take(try uint(4)))))  // BINBYTES
                case 0x63: let module = try line(), name = try line(); stack.append(try global(module, name))  // GLOBAL
                case 0x93:                                                     // STACK_GLOBAL
                    guard case let .string(name) = try pop(), case let .string(module) = try pop() else { throw fail("bad STACK_GLOBAL") }
                    stack.append(try global(module, name))
                case 0x52: let args = try pop(), callable = try pop(); stack.append(try reduce(callable, args))  // REDUCE
                case 0x62: _ = try pop()                                       // BUILD: object state (e.g. _metadata) is ignored
                case 0x51: stack.append(try persistent(try pop()))             // BINPERSID
                case 0x30: _ = try pop()                                       // POP
                case 0x31: _ = try popMark()                                   // POP_MARK
                case 0x32: stack.append(try top())                             // DUP
                default:
                    throw fail(String(format: "unsupported opcode 0x%02X at offset %d", opcode, pos - 1))
                }
            }
        }

        func top() throws -> Value {
            guard let last = stack.last, let value = last else { throw fail("empty stack at offset \(pos)") }
            return value
        }

        mutating func push(memoKey: Int) throws {
            guard let value = memo[memoKey] else { throw fail("memo key \(memoKey) undefined") }
            stack.append(value)
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
            guard case let .list(box) = try top() else { throw fail("APPEND to a non-list") }
            box.items += items
        }

        mutating func setItems(_ flat: [Value]) throws {
            guard case let .dict(box) = try top() else { throw fail("SETITEM on a non-dict") }
            guard flat.count % 2 == 0 else { throw fail("odd SETITEMS") }
            for i in stride(from: 0, to: flat.count, by: 2) { box.items.append((flat[i], flat[i + 1])) }
        }

        func persistent(_ pid: Value) throws -> Value {
            guard case let .tuple(parts) = pid, parts.count == 5, case .string("storage") = parts[0],
                  case let .global(type) = parts[1], case let .string(key) = parts[2], case let .int(count) = parts[4] else {
                throw fail("unexpected persistent id \(pid)")
            }
            let dtype = String(type.dropFirst("torch.".count).dropLast("Storage".count))
            return .storage(StorageRef(key: key, dtype: dtype, count: count))
        }

        func reduce(_ callable: Value, _ args: Value) throws -> Value {
            guard case let .global(name) = callable, case let .tuple(a) = args else { throw fail("REDUCE of a non-global") }
            switch name {
            case "collections.OrderedDict":
                return .dict(DictBox())
            case "torch._utils._rebuild_tensor_v2":
                guard a.count >= 4, case let .storage(storage) = a[0], case let .int(offset) = a[1],
                      case let .tuple(size) = a[2], case let .tuple(stride) = a[3] else { throw fail("malformed _rebuild_tensor_v2 arguments") }
                let ints = { (values: [Value]) throws -> [Int] in
                    try values.map { if case let .int(i) = $0 { i } else { throw fail("non-integer tensor size") } }
                }
                return .tensor(TensorRef(storage: storage, offset: offset, shape: try ints(size), strides: try ints(stride)))
            case "torch._utils._rebuild_parameter":
                guard let data = a.first else { throw fail("malformed _rebuild_parameter") }
                return data
            default:
                throw fail("'\(name)' is not callable")
            }
        }
    }
}
