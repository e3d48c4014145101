fn main() {
    println!("a command, not an HTTP handler");
}
