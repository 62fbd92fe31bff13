/**
 * Just enough of Dockerfile and .dockerignore syntax to check the files in this folder without a
 * container engine (infra/test/deploy.test.ts) and to replay their COPY and RUN steps on this
 * machine (dry-build.ts). Covers what these Dockerfiles use: comments, parser directives, line
 * continuations, `--flag=value` options, exec (JSON) and shell forms. Not covered (and not used
 * here): heredocs, a changed escape character, ARG/ENV substitution in instructions.
 */

export interface Instruction {
  /** Upper case: FROM, RUN, COPY, … */
  readonly keyword: string;
  /** `--name=value` options before the arguments (COPY --from, RUN --mount, HEALTHCHECK --interval, …). */
  readonly flags: Readonly<Record<string, string>>;
  /** The rest of the instruction, continuation lines joined with a space. */
  readonly args: string;
  /** The arguments of the exec form (`["node", "-e", "…"]`), when they are one. */
  readonly exec?: readonly string[];
  /** 1-based line of the instruction's first line. */
  readonly line: number;
}

export interface Stage {
  readonly index: number;
  /** `FROM image AS name`; undefined without AS. */
  readonly name: string | undefined;
  /** The image (or an earlier stage's name) after FROM. */
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  /** `# syntax=…` and other parser directives at the top. */
  readonly directives: Readonly<Record<string, string>>;
  /** ARGs before the first FROM. */
  readonly globalArgs: readonly Instruction[];
  readonly stages: readonly Stage[];
}

const FLAG = /^--([a-z][a-z-]*)=(\S+)\s*/;

/** Splits a Dockerfile into its instructions and those into build stages. */
export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split(/\r?\n/);
  const directives: Record<string, string> = {};
  let i = 0;
  for (; i < lines.length; i++) {
    const match = /^#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(lines[i] ?? '');
    if (!match) break;
    directives[(match[1] as string).toLowerCase()] = match[2] as string;
  }
  const instructions: Instruction[] = [];
  const push = (raw: string, line: number) => {
    const match = /^\s*([A-Za-z]+)\s*(.*)$/.exec(raw);
    if (!match) throw new Error(`line ${line}: not an instruction: ${raw}`);
    let rest = (match[2] as string).replace(/\s+/g, ' ').trim();
    const flags: Record<string, string> = {};
    for (let flag = FLAG.exec(rest); flag; flag = FLAG.exec(rest)) {
      flags[flag[1] as string] = flag[2] as string;
      rest = rest.slice(flag[0].length);
    }
    instructions.push({ keyword: (match[1] as string).toUpperCase(), flags, args: rest, ...execForm(rest), line });
  };
  // A trailing backslash continues an instruction on the next line; comment and empty lines
  // inside a continued instruction are dropped, as Docker does.
  let buffer: string | undefined;
  let start = 0;
  for (; i < lines.length; i++) {
    const line = lines[i] as string;
    if (/^\s*#/.test(line) || /^\s*$/.test(line)) continue;
    if (buffer === undefined) {
      buffer = '';
      start = i + 1;
    }
    if (/\\\s*$/.test(line)) {
      buffer += `${line.replace(/\\\s*$/, '')} `;
      continue;
    }
    push(buffer + line, start);
    buffer = undefined;
  }
  if (buffer !== undefined) push(buffer, start);

  const globalArgs: Instruction[] = [];
  const stages: { index: number; name: string | undefined; from: string; instructions: Instruction[] }[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const [from, as, name, ...extra] = instruction.args.split(' ');
      if (!from || (as !== undefined && (as.toUpperCase() !== 'AS' || !name)) || extra.length > 0) throw new Error(`line ${instruction.line}: FROM image [AS name], not "${instruction.args}"`);
      stages.push({ index: stages.length, name: name?.toLowerCase(), from, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG') throw new Error(`line ${instruction.line}: ${instruction.keyword} before the first FROM`);
      globalArgs.push(instruction);
    } else {
      (stages[stages.length - 1] as (typeof stages)[number]).instructions.push(instruction);
    }
  }
  return { directives, globalArgs, stages };
}

function execForm(args: string): { exec?: string[] } {
  if (!args.startsWith('[')) return {};
  try {
    const parsed: unknown = JSON.parse(args);
    if (Array.isArray(parsed) && parsed.every((a): a is string => typeof a === 'string')) return { exec: parsed };
  } catch {
    // Not JSON: the shell form (Docker runs it with /bin/sh -c).
  }
  return {};
}

/** The sources and destination of a COPY or ADD (shell or exec form). */
export function copyPaths(instruction: Instruction): { sources: string[]; dest: string } {
  const parts = instruction.exec ? [...instruction.exec] : instruction.args.split(' ');
  const dest = parts.pop();
  if (!dest || parts.length === 0) throw new Error(`line ${instruction.line}: ${instruction.keyword} needs a source and a destination`);
  return { sources: parts, dest };
}

/** HEALTHCHECK [options] CMD …: the command after CMD (exec form when it is one). */
export function healthcheckCommand(instruction: Instruction): { exec?: readonly string[]; shell?: string } | 'NONE' {
  if (/^NONE$/i.test(instruction.args)) return 'NONE';
  const match = /^CMD\s+(.*)$/i.exec(instruction.args);
  if (!match) throw new Error(`line ${instruction.line}: HEALTHCHECK [options] CMD command`);
  const command = match[1] as string;
  const { exec } = execForm(command);
  return exec ? { exec } : { shell: command };
}

/**
 * A .dockerignore, as BuildKit reads it: one pattern a line (`#` comments), `!` re-includes,
 * the last matching pattern decides, a pattern matching a folder covers everything in it.
 */
export class DockerIgnore {
  readonly #rules: { readonly exclude: boolean; readonly pattern: RegExp; readonly source: string }[];

  constructor(text: string) {
    this.#rules = text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => {
        const exclude = !line.startsWith('!');
        const source = cleanPath(exclude ? line : line.slice(1).trim());
        return { exclude, pattern: globToRegExp(source), source };
      });
  }

  /** Whether the file or folder at `path` (relative to the build context) is sent to the builder. */
  includes(path: string): boolean {
    const clean = cleanPath(path);
    const parents = clean.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of this.#rules) {
      if (parents.some((p) => rule.pattern.test(p))) excluded = rule.exclude;
    }
    return !excluded;
  }

  /** Whether some file under the folder `path` may be included (a later `!` pattern reaches inside it). */
  mayIncludeInside(path: string): boolean {
    const clean = cleanPath(path);
    return this.includes(clean) || this.#rules.some((rule) => !rule.exclude && (rule.source === clean || rule.source.startsWith(`${clean}/`) || rule.source.startsWith('**')));
  }
}

function cleanPath(path: string): string {
  return path.replace(/^\.\/+/, '').replace(/^\/+/, '').replace(/\/+$/, '').replace(/\/{2,}/g, '/');
}

/** Go's filepath.Match syntax plus `**` (any number of folders), as the Docker builders accept it. */
function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      if (glob[i + 1] === '/') {
        i++;
        out += '(?:.*/)?';
      } else {
        out += '.*';
      }
    } else if (c === '*') {
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const end = glob.indexOf(']', i);
      if (end < 0) throw new Error(`unterminated [ in .dockerignore pattern ${glob}`);
      out += `[${glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
      i = end;
    } else {
      out += c.replace(/[.+^${}()|\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${out}$`);
}
