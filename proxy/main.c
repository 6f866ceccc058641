/* main.c — placeholder until its module lands. */
int main(void) { return 1; }
