//! slugify: a URL slug from a title ("Zoë's Café — 2026 menu" -> "zoes-cafe-2026-menu"), as an IONFLUX transform.
//!
//! The ABI (docs/guides/creating_transforms.md): the input is one JSON value on stdin (here a string, or an
//! object {"text": ..., "max_length": N}); the output is one JSON value on stdout; a failure is a message on
//! stderr and a non-zero exit code. Latin-1 accented letters become their base letter; anything else that is not
//! a letter or a digit separates words. Built for wasm32-wasi with zig (Zig 0.17's std.process.Init main).

const std = @import("std");

const Input = struct { text: []const u8, max_length: usize = 80 };

pub fn main(init: std.process.Init) !u8 {
    var in_buffer: [4096]u8 = undefined;
    var stdin = std.Io.File.stdin().readerStreaming(init.io, &in_buffer);
    const data = try stdin.interface.allocRemaining(init.gpa, .limited(1 << 20));

    var err_buffer: [256]u8 = undefined;
    var stderr = std.Io.File.stderr().writerStreaming(init.io, &err_buffer);
    const input = parse(init.gpa, data) catch {
        try stderr.interface.print("slugify: the input must be a JSON string or {{\"text\": string, \"max_length\": n}}\n", .{});
        try stderr.interface.flush();
        return 2;
    };

    const slug = try slugify(init.gpa, input.text, input.max_length);
    var out_buffer: [4096]u8 = undefined;
    var stdout = std.Io.File.stdout().writerStreaming(init.io, &out_buffer);
    try stdout.interface.print("{f}\n", .{std.json.fmt(.{ .slug = slug, .length = slug.len }, .{})});
    try stdout.interface.flush();
    return 0;
}

fn parse(gpa: std.mem.Allocator, data: []const u8) !Input {
    const options: std.json.ParseOptions = .{ .ignore_unknown_fields = true };
    if (std.json.parseFromSliceLeaky([]const u8, gpa, data, options)) |text| {
        return .{ .text = text };
    } else |_| {}
    return std.json.parseFromSliceLeaky(Input, gpa, data, options);
}

/// The base letter of a Latin-1 accented letter (U+00C0..U+00FF), lower-cased; 0 when it has none.
fn baseLetter(code_point: u21) u8 {
    const table = "aaaaaaaceeeeiiiidnooooo_ouuuuyts" ++ "aaaaaaaceeeeiiiidnooooo_ouuuuyty";
    if (code_point < 0xC0 or code_point > 0xFF) return 0;
    const letter = table[code_point - 0xC0];
    return if (letter == '_') 0 else letter;
}

fn slugify(gpa: std.mem.Allocator, text: []const u8, max_length: usize) ![]const u8 {
    var slug: std.ArrayList(u8) = .empty;
    var pending_dash = false;
    var view = std.unicode.Utf8View.init(text) catch return error.InvalidUtf8;
    var it = view.iterator();
    while (it.nextCodepoint()) |c| {
        const letter: u8 = if (c < 0x80 and std.ascii.isAlphanumeric(@intCast(c)))
            std.ascii.toLower(@intCast(c))
        else if (c == '\'' or c == 0x2019) // an apostrophe joins: "zoe's" -> "zoes"
            continue
        else
            baseLetter(c);
        if (letter == 0) {
            pending_dash = slug.items.len > 0;
            continue;
        }
        if (pending_dash) {
            if (slug.items.len + 1 >= max_length) break;
            try slug.append(gpa, '-');
            pending_dash = false;
        }
        if (slug.items.len >= max_length) break;
        try slug.append(gpa, letter);
    }
    return slug.items;
}
