fn main() {
    hookflash_app::run()
}
