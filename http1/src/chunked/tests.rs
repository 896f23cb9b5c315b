use super::*;

const LIMITS: Limits = Limits {
    max_line: 64,
    max_extensions: 200,
    max_trailer_bytes: 256,
    max_trailer_fields: 4,
};

/// Decodes `input` fed in pieces of `step` bytes: the body's data, the
/// bytes left after its end, and the trailers; or the refusal.
fn decode_in(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, Vec<u8>), ChunkError> {
    let mut d = Decoder::new(LIMITS);
    let mut data = Vec::new();
    let mut at = 0;
    while at < input.len() && !d.is_done() {
        let end = (at + step).min(input.len());
        let mut piece = &input[at..end];
        while !piece.is_empty() && !d.is_done() {
            let got = d.decode(piece)?;
            data.extend_from_slice(got.data);
            at += got.used;
            piece = &piece[got.used..];
            assert!(got.used > 0 || got.done);
        }
    }
    if !d.is_done() {
        return Err(ChunkError::BadSize);
    }
    Ok((data, input.len() - at, d.trailers().to_vec()))
}

#[test]
fn decodes_data_extensions_and_trailers_in_any_pieces() {
    let body = b"5\r\nhello\r\n006;name=\"v a\"\r\n world\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\nGET / HTTP/1.1\r\n";
    for step in 1..body.len() {
        let (data, rest, trailers) = decode_in(body, step).unwrap();
        assert_eq!(data, b"hello world", "step {step}");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n".len(), "step {step}");
        assert_eq!(trailers, b"X-Sum: 1\r\nX-B: 2\r\n");
    }
    let (data, rest, trailers) = decode_in(b"0\r\n\r\n", 1).unwrap();
    assert!(data.is_empty() && trailers.is_empty());
    assert_eq!(rest, 0);
    // Leading zeros and whitespace before the extension.
    assert_eq!(
        decode_in(b"0003 \t;x\r\nabc\r\n0\r\n\r\n", 4).unwrap().0,
        b"abc"
    );
}

#[test]
fn refuses_what_a_next_hop_could_read_otherwise() {
    let cases: &[(&[u8], ChunkError)] = &[
        (b"5\nhello\r\n0\r\n\r\n", ChunkError::BadLineEnd),
        (b"5\r\nhello\n0\r\n\r\n", ChunkError::BadDataEnd),
        (b"5\r\nhelloX\r\n0\r\n\r\n", ChunkError::BadDataEnd),
        (b"5\r\nhello\r\n0\r\n\n", ChunkError::BadLineEnd),
        (b"5\r\nhello\r\n0\r\nX: 1\n\r\n", ChunkError::BadLineEnd),
        (b"\r\nhello\r\n", ChunkError::BadSize),
        (b"-5\r\n", ChunkError::BadSize),
        (b"0x5\r\n", ChunkError::BadSize),
        (b"5 5\r\n", ChunkError::BadSize),
        (b"5;a\x00b\r\n", ChunkError::BadSize),
        (b"10000000000000000\r\n", ChunkError::BadSize),
        (b"5\rhello", ChunkError::BadLineEnd),
        (b"0\r\nX : 1\r\n\r\n", ChunkError::BadTrailers),
        (b"0\r\nX: 1\r\n folded\r\n\r\n", ChunkError::BadTrailers),
    ];
    for (input, want) in cases {
        for step in [1, 3, input.len()] {
            assert_eq!(
                decode_in(input, step),
                Err(*want),
                "{} step {step}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn bounds_lines_and_trailers() {
    let ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(62));
    assert!(decode_in(ext.as_bytes(), 7).is_ok());
    let ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(63));
    assert_eq!(decode_in(ext.as_bytes(), 7), Err(ChunkError::LineTooLong));
    let zeros = format!("{}1\r\na\r\n0\r\n\r\n", "0".repeat(64));
    assert_eq!(decode_in(zeros.as_bytes(), 5), Err(ChunkError::LineTooLong));
    let fields: String = (0..5).map(|i| format!("T{i}: v\r\n")).collect();
    assert_eq!(
        decode_in(format!("0\r\n{fields}\r\n").as_bytes(), 9),
        Err(ChunkError::TrailersTooLarge)
    );
    let big = format!("0\r\nT: {}\r\n\r\n", "v".repeat(300));
    assert_eq!(
        decode_in(big.as_bytes(), 50),
        Err(ChunkError::TrailersTooLarge)
    );
}

#[test]
fn a_size_near_the_limit_is_taken_and_data_counted_down() {
    let mut d = Decoder::new(LIMITS);
    let got = d.decode(b"ffffffffffffffff\r\nab").unwrap();
    assert_eq!(got.data, b"ab");
    assert_eq!(d.state, State::Data(u64::MAX - 2));
}

#[test]
fn trailer_fields_are_read_once_the_body_is_done() {
    let mut d = Decoder::new(LIMITS);
    let mut seen = Vec::new();
    d.decode(b"0\r\nX-Sum: 1\r\nX-B:  two \r\n").unwrap();
    d.for_each_trailer(|n, v| seen.push((n.to_owned(), v.to_vec())));
    assert!(seen.is_empty(), "not done yet");
    assert!(d.decode(b"\r\n").unwrap().done);
    d.for_each_trailer(|n, v| seen.push((n.to_owned(), v.to_vec())));
    assert_eq!(
        seen,
        [
            ("X-Sum".to_owned(), b"1".to_vec()),
            ("X-B".to_owned(), b"two".to_vec())
        ]
    );
}

#[test]
fn extensions_are_bounded_over_the_whole_body() {
    // Each line is within its bound; together they are not.
    let one = format!("1;{}\r\na\r\n", "e".repeat(50));
    let three = format!("{}0\r\n\r\n", one.repeat(3));
    assert!(decode_in(three.as_bytes(), 11).is_ok());
    let five = format!("{}0\r\n\r\n", one.repeat(5));
    assert_eq!(decode_in(five.as_bytes(), 11), Err(ChunkError::LineTooLong));
}
