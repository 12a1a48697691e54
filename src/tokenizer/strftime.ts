// Python-compatible strftime (C locale, local time) for the `strftime_now` helper chat templates call,
// e.g. Llama 3.1+: strftime_now("%d %b %Y") -> "26 Jul 2024".

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

function pad(n: number, width = 2, fill = "0"): string {
  return String(n).padStart(width, fill);
}

function dayOfYear(date: Date): number {
  const start = new Date(date.getFullYear(), 0, 1);
  const ms = Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) -
    Date.UTC(start.getFullYear(), start.getMonth(), start.getDate());
  return Math.floor(ms / 86_400_000) + 1;
}

/**
 * Formats `date` (local time) like Python's `time.strftime` in the C locale. Supported directives:
 * %a %A %b %B %c %d %e %H %I %j %m %M %p %S %y %Y %z %% ; unknown directives are kept verbatim.
 */
export function strftime(date: Date, format: string): string {
  return format.replace(/%[a-zA-Z%]/g, (token) => {
    const day = DAYS[date.getDay()] ?? "";
    const month = MONTHS[date.getMonth()] ?? "";
    const hours = date.getHours();
    switch (token) {
      case "%a":
        return day.slice(0, 3);
      case "%A":
        return day;
      case "%b":
        return month.slice(0, 3);
      case "%B":
        return month;
      case "%c":
        return strftime(date, "%a %b %e %H:%M:%S %Y");
      case "%d":
        return pad(date.getDate());
      case "%e":
        return pad(date.getDate(), 2, " ");
      case "%H":
        return pad(hours);
      case "%I":
        return pad(hours % 12 === 0 ? 12 : hours % 12);
      case "%j":
        return pad(dayOfYear(date), 3);
      case "%m":
        return pad(date.getMonth() + 1);
      case "%M":
        return pad(date.getMinutes());
      case "%p":
        return hours < 12 ? "AM" : "PM";
      case "%S":
        return pad(date.getSeconds());
      case "%y":
        return pad(date.getFullYear() % 100);
      case "%Y":
        return String(date.getFullYear());
      case "%z": {
        const offset = -date.getTimezoneOffset();
        const abs = Math.abs(offset);
        return `${offset < 0 ? "-" : "+"}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
      }
      case "%%":
        return "%";
      default:
        return token;
    }
  });
}
