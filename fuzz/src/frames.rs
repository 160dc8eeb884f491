//! Building client frames (masked, RFC 6455) for seeds and regression inputs.

/// A masked client frame with the shortest length encoding, or the one `long` forces
/// (`Some(2)` or `Some(8)` length bytes).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], long: Option<u8>) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let len = payload.len();
    match (long, len) {
        (None, n) if n < 126 => out.push(0x80 | n as u8),
        (None | Some(2), n) if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        (_, n) => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A close frame's payload: code and reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason.as_bytes());
    out
}
