# Turns a text file into a C header defining one byte array, so emberctl can
# print its bash completion script (packaging/completion/emberctl.bash)
# without a copy of it in C. Run with -DIN=file -DOUT=header -DNAME=symbol.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n\t" bytes "${bytes}")
file(WRITE "${OUT}.tmp"
  "/* Generated from ${IN} by embed.cmake; do not edit. */\n"
  "static const char ${NAME}[${len}] = {\n\t${bytes}\n};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
